"""Models from a Hugging Face hub in the host description: what they render to, and what is refused."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from hostsupport import DEMO, raw_vars, render_spec

from generators.errors import SpecError
from generators.pipeline import plan_hostvars
from generators.plan.layout import Layout
from generators.spec import Host

SPLIT = "Q4_K_M/Qwen3-Next-80B-A3B-Instruct-Q4_K_M-00001-of-00002.gguf"


def demo_with(models: list[dict[str, Any]], hub: dict[str, Any] | None = None, mmproj: str | None = None) -> Host:
    data = copy.deepcopy(raw_vars("demo", DEMO))
    data["llamafleet"]["models"] = models
    if hub is not None:
        data["llamafleet"]["hub"] = hub
    if mmproj is not None:
        data["llamafleet"]["servers"][0]["mmproj"] = mmproj
    return plan_hostvars("demo", data).spec


def rendered(host: Host) -> dict[str, str]:
    return {path: f.content for path, f in render_spec(host, "demo").items()}


def test_hf_model_lands_in_models_dir_under_its_basename_and_the_manifest_names_its_source() -> None:
    host = demo_with(
        [{"name": "smollm2", "hf": {"repo": "llamafleet/smollm2-GGUF", "file": SPLIT, "revision": "v1"}},
         {"name": "proj", "hf": {"repo": "llamafleet/smollm2-GGUF", "file": "mmproj-F16.gguf"}}],
        hub={"token_file": "/etc/llamafleet/hf-token", "endpoint": "http://127.0.0.1:8999/"},
        mmproj="proj",
    )
    models_dir = Layout(host).models_dir
    files = rendered(host)
    manifest = json.loads(files["manifest.json"])
    first = f"{models_dir}/Qwen3-Next-80B-A3B-Instruct-Q4_K_M-00001-of-00002.gguf"
    assert manifest["models"][0]["path"] == first
    assert manifest["models"][0]["source"]["hf"] == {"repo": "llamafleet/smollm2-GGUF", "file": SPLIT, "revision": "v1"}
    assert manifest["models"][1]["source"]["hf"]["revision"] == "main"
    assert manifest["hub"] == {"token_file": "/etc/llamafleet/hf-token", "endpoint": "http://127.0.0.1:8999"}
    unit = next(text for path, text in files.items() if path.startswith("systemd/user/"))
    env = next(text for path, text in files.items() if path.startswith("llamafleet/llamafleet-"))
    launch = unit + env
    assert first in launch, "the server loads the first part of a split GGUF"
    assert f"{models_dir}/mmproj-F16.gguf" in launch


def test_no_hub_block_renders_null() -> None:
    host = demo_with([{"name": "smollm2", "hf": {"repo": "llamafleet/smollm2-GGUF", "file": "m.gguf"}}])
    assert json.loads(rendered(host)["manifest.json"])["hub"] is None


@pytest.mark.parametrize(
    ("hub", "model_extra"),
    [({"token": "hf_x"}, {}), ({"endpoint": "hf_secretvalue"}, {}), (None, {"token": "abc"})],
    ids=["hub-token", "hub-hf-value", "model-token"],
)
def test_inline_token_is_refused_pointing_to_token_file(hub: dict[str, Any] | None, model_extra: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as err:
        demo_with([{"name": "smollm2", "hf": {"repo": "a/b", "file": "m.gguf", **model_extra}}], hub=hub)
    text = str(err.value)
    assert text.startswith("host demo: llamafleet.")
    assert "token_file" in text
    assert "hf_x" not in text and "abc" not in text, "the error never echoes the token"
