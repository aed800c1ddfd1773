"""Serve the fake hub on 127.0.0.1 for a manual or container run of roles/hf_models (not collected by pytest).

    python tests/support/serve_fakehub.py GGUF_PATH PORT_FILE [PORT]

Repos: ``llamafleet/smollm2-GGUF`` (the model as ``SmolLM2-135M-Instruct-Q4_1.gguf`` and split in three parts under
``split/``) and the gated ``llamafleet/gated-GGUF`` (the same model under two names), open to the token
``hf_llamafleet_test``. Writes the endpoint URL to PORT_FILE and serves until killed, on PORT when given (the Molecule hub scenario's host_vars name it), else
on a free port.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fakehub import Hub, HubFile, Repo, serve  # beside this script, which python puts first on sys.path

TOKEN = "hf_llamafleet_test"


def main() -> None:
    data = Path(sys.argv[1]).read_bytes()
    third = len(data) // 3
    parts = [data[:third], data[third : 2 * third], data[2 * third :]]
    hub = Hub(
        repos={
            "llamafleet/smollm2-GGUF": Repo(
                files={
                    "SmolLM2-135M-Instruct-Q4_1.gguf": HubFile(data),
                    **{f"split/smollm2-{i:05d}-of-00003.gguf": HubFile(p) for i, p in enumerate(parts, 1)},
                }
            ),
            "llamafleet/gated-GGUF": Repo(
                files={
                    "SmolLM2-135M-Instruct-Q4_1.gguf": HubFile(data),
                    # the model a host switches to in the Molecule hub scenario (a new name: a new local file)
                    "SmolLM2-135M-Instruct-gated.Q4_1.gguf": HubFile(data),
                },
                gated=True,
                granted_tokens=frozenset({TOKEN}),
            ),
        },
        valid_tokens=frozenset({TOKEN}),
    )
    _, endpoint = serve(hub, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    Path(sys.argv[2]).write_text(endpoint + "\n")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
