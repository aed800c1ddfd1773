"""The hub scenario's host: its model came from the (fake) Hugging Face hub, verified, and the server serves it."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]
HOST = "lf-hub-debian13"
USER = "llama"
MODELS_DIR = "/var/lib/llamafleet/models"
MODEL = f"{MODELS_DIR}/SmolLM2-135M-Instruct-Q4_1.gguf"
HUB = "http://127.0.0.1:8765"
REPO = "llamafleet/smollm2-GGUF"
PORT = 8080


def python(host, script):
    out = host.run("python3 -c %s", script)
    assert out.rc == 0, out.stderr
    return out.stdout


def published_sha256(host):
    """The sha256 the hub publishes for the file (its paths-info API, as huggingface_hub reads it)."""
    script = (
        "import urllib.request,urllib.parse;"
        f"d=urllib.parse.urlencode({{'paths':'SmolLM2-135M-Instruct-Q4_1.gguf','expand':'true'}}).encode();"
        f"print(urllib.request.urlopen('{HUB}/api/models/{REPO}/paths-info/main',data=d,timeout=30).read().decode())"
    )
    entries = json.loads(python(host, script))
    return entries[0]["lfs"]["oid"]


def test_model_is_in_the_models_dir_owned_by_the_service_user(host):
    model = host.file(MODEL)
    assert model.is_file
    assert model.user == USER
    assert host.file(MODELS_DIR).user == USER


def test_model_sha256_is_the_one_the_hub_publishes(host):
    published = published_sha256(host)
    assert len(published) == 64
    assert host.file(MODEL).sha256sum == published
    # The fetcher's record of the verification agrees.
    sidecar = json.loads(host.file(f"{MODELS_DIR}/.SmolLM2-135M-Instruct-Q4_1.gguf.verified.json").content_string)
    assert sidecar["sha256"] == published


def test_no_partial_download_remains(host):
    out = host.run(f"find {MODELS_DIR} -name '*.part'")
    assert out.rc == 0
    assert out.stdout.strip() == ""


def test_server_loads_the_hub_model_and_answers_a_completion(host):
    unit = host.file(f"/home/{USER}/.config/systemd/user/llamafleet-main.service").content_string
    assert f"--model {MODEL}" in unit
    script = (
        "import urllib.request,json;"
        f"r=urllib.request.Request('http://127.0.0.1:{PORT}/v1/chat/completions',data=json.dumps({{"
        "'model':'local','max_tokens':24,'temperature':0,"
        "'messages':[{'role':'user','content':'Name a colour.'}]}).encode(),"
        "headers={'Content-Type':'application/json'});"
        "print(urllib.request.urlopen(r,timeout=120).read().decode())"
    )
    reply = json.loads(python(host, script))
    assert reply["choices"][0]["message"]["content"].strip()


def plan_on_the_host(**params):
    """The hf_models role's plan step, as the role runs it: its fetcher module (roles/hf_models/library) in check
    mode, shipped by Ansible to the host and run there with the hub venv's python as the service user."""
    env = {
        **os.environ,
        "ANSIBLE_LIBRARY": str(PROJECT / "roles" / "hf_models" / "library"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
    }
    cmd = [
        str(Path(sys.executable).parent / "ansible"),
        "-i", os.environ["MOLECULE_INVENTORY_FILE"],
        HOST,
        "-m", "llamafleet_hf_fetch",
        "-a", json.dumps(params),
        "--check",
        "--become", "--become-user", USER,
        "-e", "ansible_python_interpreter=/opt/llamafleet/hub-venv/bin/python",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"][HOST]


def test_the_plan_finds_the_model_present_so_nothing_is_downloaded_again(host):
    """What the role's plan step (and --check --diff) sees on the converged host: present, 0 bytes to download."""
    plan = plan_on_the_host(
        host=HOST, repo=REPO, file="SmolLM2-135M-Instruct-Q4_1.gguf", dest=MODELS_DIR, endpoint=HUB, reserve_bytes=0
    )
    assert plan["changed"] is False
    assert plan["bytes_to_download"] == 0
    assert plan["path"] == MODEL
    assert [f["action"] for f in plan["files"]] == ["present"]


def test_the_fetcher_is_not_left_on_the_host(host):
    """The fetcher is a module Ansible ships per run; the venv keeps no copy of it (hosts before had hub.py)."""
    assert not host.file("/opt/llamafleet/hub-venv/hub.py").exists
