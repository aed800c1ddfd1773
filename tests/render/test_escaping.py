"""The escaping functions of generators/render/templating.py, read back by the real readers (issue 14, class 2).

systemd: an executable is created at a path whose name holds the hostile text and ExecStart= names it through
:func:`systemd_quote`; ``systemd-analyze verify`` only passes when systemd's own parsing of the word (quotes, C
escapes, ``%`` specifiers, ``$`` variables) gives back exactly that path. The same words are split by the property
test's :func:`systemd_words`, which must agree. bash: a word quoted by :func:`shell_quote` and text escaped by
:func:`shell_text` inside double quotes are printed back by bash itself. Line breaks and control characters are
refused (:class:`Unrenderable`), never written.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from generators.render.templating import (
    Unrenderable,
    env_file_value,
    shell_comment,
    shell_quote,
    shell_text,
    systemd_env,
    systemd_quote,
    systemd_value,
)

_spec = importlib.util.spec_from_file_location("prop", Path(__file__).resolve().parents[1] / "spec" /
                                               "test_property_strings.py")
assert _spec is not None and _spec.loader is not None
_prop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_prop)
systemd_words = _prop.systemd_words

NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x00")
HOSTILE = st.text(alphabet=st.one_of(st.sampled_from(list("%$\"'\\ ;`#={}*?")), NAME_CHARS), min_size=1,
                  max_size=16)


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is required for this test (apt-get install systemd)"
    return found


@settings(max_examples=25, deadline=None)
@given(name=HOSTILE)
@example(name="$HOME %h ${X}")  # systemd expands % in the executable too, but not $ (found by this test)
@example(name="a\\b\"c'd")
def test_systemd_reads_an_exec_word_back_exactly(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze
    root = tmp_path_factory.mktemp("sd")
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    # systemd refuses executable names holding a backslash or a quote (string_is_safe: "special characters") even
    # when it has read them back right; those are covered by systemd_words's agreement only
    program = root / ("bin-" + "".join("_" if c in "\\\"'" else c for c in name))
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    word = systemd_quote(str(program), command=True)
    arg = systemd_quote(name)
    assert systemd_words(f"{word} --flag {arg}", exec_line=True) == [str(program), "--flag", name]
    unit = root / "x.service"
    unit.write_text(f"[Unit]\nDescription={systemd_value('d ' + name.replace(chr(92), ''))}\n"
                    f"[Service]\nEnvironment={systemd_env('A=' + name)}\nExecStart={word} --flag {arg}\n")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    done = subprocess.run([analyze, "verify", "--user", "--man=no", str(unit)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", (word, done.stderr)


def test_systemd_verify_catches_a_wrong_word(analyze: str, tmp_path: Path) -> None:
    """The check above can fail: an unescaped % makes systemd look for another path."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    program = tmp_path / "bin-%n"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = tmp_path / "x.service"
    unit.write_text(f"[Service]\nExecStart={program}\n")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run([analyze, "verify", "--user", "--man=no", str(unit)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode != 0 or done.stderr.strip()


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30))
def test_bash_reads_words_and_text_back_exactly(text: str) -> None:
    script = f"w={shell_quote(text)}\nprintf '%s\\0' \"$w\" \"{shell_text(text)}\"\n"
    assert subprocess.run(["bash", "-n"], input=script.encode(), timeout=30).returncode == 0
    done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.decode().split("\0")[:-1] == [text, text]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "a\x1bb", "x\n[Service]\nExecStartPre=+/bin/sh"])
def test_line_breaks_are_refused_for_units_env_files_and_comments(bad: str) -> None:
    for escape in (systemd_quote, systemd_value, systemd_env, env_file_value, shell_comment):
        with pytest.raises(Unrenderable):
            escape(bad)


def test_plain_values_are_unchanged() -> None:
    """Today's valid inputs render as before (the goldens do not move)."""
    assert systemd_quote("/opt/x/llama-server") == "/opt/x/llama-server"
    assert systemd_env("OLLAMA_HOST=127.0.0.1:11434") == '"OLLAMA_HOST=127.0.0.1:11434"'
    assert systemd_env("PYTHONPATH=/opt/p", quote=False) == "PYTHONPATH=/opt/p"
    assert systemd_value("%h/.config", specifiers=True) == "%h/.config"
    assert systemd_value("50%") == "50%%"
    assert env_file_value("a,b:c") == "a,b:c"
    assert env_file_value('a "b"') == '"a \\"b\\""'
    assert shell_quote("/usr/bin/g++-14") == "/usr/bin/g++-14"
