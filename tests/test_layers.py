"""The controller package's layers: every import in generators/ goes down the layers, and none makes a cycle.

The layers, lowest first (a module may import its own layer and those below it, never one above):

0. leaves: ``generators.errors``, ``generators.data`` (the one loader of generators/data), ``generators.merge``
1. spec: ``generators.spec`` (parse and validate the inventory's host description)
2. facts: ``generators.facts`` (what the host is and reports: GPUs, distro, CUDA toolchain, memory)
3. plan: ``generators.plan`` (every decision once, the memory fit included)
4. render: ``generators.render`` (pure text from the plan)
5. manifest: ``generators.manifest`` (the typed contract the roles read)
6. edges: ``generators.pipeline``, ``generators.cli``, ``generators.inventory``, ``generators`` itself and
   ``generators.__main__`` (hostvars in, files out)

Every import counts, function-level ones included (``ast.walk`` sees them all). Programs that run on hosts (the
SSE proxy, the hub fetcher, the bundle extractor) are no layer: no layer may import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "generators"
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("leaf", ("generators.errors", "generators.data", "generators.merge")),
    ("spec", ("generators.spec",)),
    ("facts", ("generators.facts",)),
    ("plan", ("generators.plan",)),
    ("render", ("generators.render",)),
    ("manifest", ("generators.manifest",)),
    ("edge", ("generators.pipeline", "generators.cli", "generators.inventory", "generators.__main__", "generators")),
)
HOST_PROGRAMS = ("generators.sseproxy", "generators.hub", "generators.bundle")


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
    """The index of the most specific layer prefix ``module`` falls under."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(module, prefix) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if not any(_within(name, p) for p in HOST_PROGRAMS):
            found[name] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The generators modules ``path`` imports anywhere in its body (``from pkg import mod`` names the module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known | set(HOST_PROGRAMS) else base
                       for a in node.names]
        else:
            continue
        out |= {t for t in targets if _within(t, "generators")}
    return out - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, name, known) for name, path in mods.items()}


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
        for mod, deps in graph().items() for dep in sorted(deps)
        if not any(_within(dep, p) for p in HOST_PROGRAMS) and layer_of(dep) > layer_of(mod)
    ]
    assert not upward, "\n".join(upward)


def test_no_layer_imports_a_host_program() -> None:
    found = [f"{mod} imports {dep}" for mod, deps in graph().items() for dep in sorted(deps)
             if any(_within(dep, p) for p in HOST_PROGRAMS)]
    assert not found, "\n".join(found)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_imports_have_no_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_catch_an_upward_import_a_late_import_and_a_cycle(tmp_path: Path) -> None:
    source = "def f():\n    from generators.render import render_host\n    return render_host\n"
    path = tmp_path / "generators" / "plan" / "late.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = imports(path, "generators.plan.late", {"generators.render"})
    assert found == {"generators.render"} and layer_of("generators.render") > layer_of("generators.plan.late")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_every_layer_has_modules(layer: str) -> None:
    assert any(LAYERS[layer_of(m)][0] == layer for m in modules()), layer


def test_every_template_has_one_name() -> None:
    from generators.render.templating import Templates

    on_disk = sorted(p.name for p in (PACKAGE / "render" / "templates").glob("*.j2"))
    assert sorted(t.value for t in Templates) == on_disk
