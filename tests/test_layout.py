"""kata/'s rooms stay as README's Layout draws them: imports point downward, no circles, short modules and functions.

The learner API (kata/*.py) is the floor; harness/ stands on it; lab/ and grade/ stand on both (the lab uses the
harness's target switch); lab/ and grade/ never meet. Imports under `if TYPE_CHECKING:` are for the type checker
only and do not count; an import inside a function counts (it runs). Entry points (__main__.py) stand above every
room.
"""

import ast
from pathlib import Path

import pytest

from kata.harness.target import ROOT

KATA = ROOT / "kata"
MODULES = sorted(p for p in KATA.rglob("*.py") if "__pycache__" not in p.parts)
BELOW = {"api": set(), "harness": {"api"}, "lab": {"api", "harness"}, "grade": {"api", "harness"}}  # room → rooms
ROOMS = set(BELOW)
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 50


def room(path: Path) -> str:
    parts = path.relative_to(KATA).parts
    return parts[0] if len(parts) > 1 else "api"


def name_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, kata module) for every import that runs (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree)
               if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("kata")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kata"):
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def kata_module(dotted: str) -> str | None:
    """The kata module a dotted import reaches (kata.harness.check.expect_equal → kata.harness.check)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        candidate = ROOT.joinpath(*parts[:cut])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:cut])
    return None


@pytest.mark.parametrize("path", MODULES, ids=[name_of(p) for p in MODULES])
def test_imports_point_downward(path):
    if path.name == "__main__.py":
        return
    here = room(path)
    for line, dotted in runtime_imports(path):
        target = kata_module(dotted) or dotted
        parts = target.split(".")
        there = parts[1] if len(parts) > 1 and parts[1] in ROOMS else "api"
        assert there == here or there in BELOW[here], \
            f"{name_of(path)}:{line} imports {target}: the {here} room may import only {sorted(BELOW[here])}"


def test_no_import_circle():
    graph = {name_of(p): {m for _, d in runtime_imports(p) if (m := kata_module(d)) and m != name_of(p)}
             for p in MODULES}
    seen, path = set(), []

    def visit(node: str) -> None:
        if node in path:
            raise AssertionError("import circle: " + " → ".join([*path[path.index(node):], node]))
        if node in seen:
            return
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        path.pop()
        seen.add(node)
    for node in sorted(graph):
        visit(node)


@pytest.mark.parametrize("path", MODULES, ids=[name_of(p) for p in MODULES])
def test_a_module_is_short(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name_of(path)}: {lines} lines (one job per module: at most {MAX_MODULE_LINES})"


@pytest.mark.parametrize("path", MODULES, ids=[name_of(p) for p in MODULES])
def test_a_function_is_short(path):
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{name_of(path)}: functions over {MAX_FUNCTION_LINES} lines (docstring included): {long}"
