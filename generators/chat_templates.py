"""Chat templates shipped with llamafleet, for models whose own GGUF template lacks what agents need.

SmolLM2's template has no tool block: with it, llama-server cannot turn a request's `tools` into a
structured `tool_calls` answer. ``chatml-json-tools`` keeps SmolLM2's ChatML framing and adds tools.
"""

from __future__ import annotations

import functools
from importlib import resources

_DIR = "data/chat_templates"


@functools.cache
def known_templates() -> tuple[str, ...]:
    return tuple(
        sorted(p.name.removesuffix(".jinja") for p in resources.files("generators").joinpath(_DIR).iterdir()
               if p.name.endswith(".jinja"))
    )


def template_text(name: str) -> str:
    return resources.files("generators").joinpath(_DIR, f"{name}.jinja").read_text(encoding="utf-8")
