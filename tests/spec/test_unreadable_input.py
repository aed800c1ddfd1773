"""No input ends in a traceback (issue 14, class 4): each unreadable inventory is one line naming the host and the
file (with its line) or the field, exit status 2, nothing written.

The CLI's ``main`` runs in this process: an exception escaping it is the traceback a user would see, and fails
the test. Templates in host_vars are templated as the playbook templates them (the CLI reads the inventory
through Ansible), so an undefined variable or a broken template is an error naming the file and line there too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generators.cli import main
from generators.inventory import MAX_EXPANDED, check_bounded, expanded_size
from generators.errors import SpecError
from generators.pipeline import hostvars_of, with_build

VALID = """llamafleet:
  user: llama
  distro: {name: debian, version: '13'}
  llamacpp: {build: 9100, source: {pypi: {}}, native: false}
  models:
  - {name: m, path: MODEL}
  servers:
  - {name: main, model: m}
"""

BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{p}' if p else 'x'] * 10)}]\n"
               for p, a in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh")) + \
    "llamafleet:\n  user: llama\n  models: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n"

CASES: dict[str, tuple[str, str]] = {
    # name: (host_vars text, what the line must name after "host NAME: ")
    "yaml-syntax": ("llamafleet:\n  user: [unclosed\n", "{file}:"),
    "yaml-tabs": ("llamafleet:\n\tuser: x\n", "{file}:"),
    "vars-a-list": ("- a\n- b\n", "{file}"),
    "vars-a-string": ("just a string\n", "{file}"),
    "vars-empty": ("", "llamafleet"),
    "llamafleet-a-list": ("llamafleet: [a, b]\n", "llamafleet"),
    "llamafleet-a-string": ("llamafleet: text\n", "llamafleet"),
    "llamafleet-null": ("llamafleet:\n", "llamafleet"),
    "template-undefined": ("llamafleet:\n  user: '{{ nope }}'\n", "{file}:2:"),
    "template-broken": ("llamafleet:\n  user: '{{ nope '\n", "{file}:2:"),
    "template-filter-unknown": ("llamafleet:\n  user: '{{ 1 | nosuchfilter }}'\n", "{file}:2:"),
    "vault-undecryptable": ("llamafleet:\n  user: !vault |\n    $ANSIBLE_VAULT;1.1;AES256\n    6231\n", "{file}:"),
    "alias-bomb": (BOMB, "llamafleet"),
    "self-reference-list": ("llamafleet: &x\n  models: [1]\n", "llamafleet"),
}


def inventory(root: Path, name: str, text: str) -> tuple[Path, Path]:
    inv = root / "inventory"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(f"all:\n  hosts:\n    {name}:\n")
    hv = inv / "host_vars" / f"{name}.yml"
    hv.write_text(text)
    return inv, hv


@pytest.mark.parametrize("name", sorted(CASES))
def test_unreadable_inventory_is_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, names = CASES[name]
    inv, hv = inventory(tmp_path, name, text)
    out = tmp_path / "out"
    code = main(["render", "--inventory", str(inv), "--host", name, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith(f"host {name}: ") for line in lines), err
    assert lines[0].startswith(f"host {name}: " + names.format(file=hv)), err
    assert "Traceback" not in err
    assert not out.exists()


def test_alias_bomb_is_refused_end_to_end(tmp_path: Path) -> None:
    inv, _ = inventory(tmp_path, "bomb", BOMB)
    done = subprocess.run([sys.executable, "-m", "generators", "render", "--inventory", str(inv), "--host", "bomb",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("host bomb: llamafleet: expands to more than"), done.stderr


def test_expanded_size_counts_without_expanding() -> None:
    leaf = ["x"] * 10
    layer: list[object] = leaf
    for _ in range(12):  # 10**13 nodes once expanded
        layer = [layer] * 10
    assert expanded_size(layer) > MAX_EXPANDED
    assert expanded_size({"a": [1, 2, {"b": "c"}]}) == 8  # 2 dicts, 1 list, 5 scalars
    with pytest.raises(SpecError):
        check_bounded("h", {"models": layer})


@pytest.mark.parametrize("spec", [[1, 2], "text", {"llamacpp": [1]}, {"llamacpp": {"source": "x"}}])
def test_preflight_upgrade_of_a_misshapen_description_reaches_validation(spec: object) -> None:
    assert hostvars_of(with_build(spec, 9200) if isinstance(spec, dict) else spec, 9200)


def test_corrupt_gguf_names_the_file_and_a_missing_one_warns(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    inv, _ = inventory(tmp_path, "corrupt", VALID.replace("MODEL", str(bad)))
    code = main(["render", "--inventory", str(inv), "--host", "corrupt", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"host corrupt: llamafleet.models[0].path: {bad}: not a readable GGUF header ("), err
    assert len(err.strip().splitlines()) == 1

    other = tmp_path / "second"
    other.mkdir()
    inv, _ = inventory(other, "missing", VALID.replace("MODEL", str(tmp_path / "absent.gguf")))
    code = main(["render", "--inventory", str(inv), "--host", "missing", "--out", str(other / "out")])
    assert code == 0


def test_corrupt_gguf_given_to_fit_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"not a gguf at all")
    inv, _ = inventory(tmp_path, "fitbad", VALID.replace("MODEL", "/srv/m.gguf"))
    code = main(["fit", "--inventory", str(inv), "--host", "fitbad", "--gguf", f"m.gguf={bad}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"host fitbad: --gguf: {bad}: not a readable GGUF header"), err


def test_unreadable_probe_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    probe = tmp_path / "probe.json"
    probe.write_text("{not json")
    code = main(["toolchain", "--host", "h", "--probe-json", str(probe)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("host h: "), err
