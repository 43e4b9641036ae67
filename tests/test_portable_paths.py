"""The learner's paths work on macOS and ARM: the self-check (the harness), the hints and the lab call nothing that
exists only on Linux; the sandbox and the memory limit are the grader's, and it says so where they are missing."""

import ast
from pathlib import Path

import pytest

from kata.harness.target import ROOT

LINUX_ONLY = {"resource", "sched_getaffinity", "sysconf", "unshare", "pivot_root", "setpriv", "/proc/", "prctl",
              "kata.grade"}
LEARNER_PATH = sorted(p for p in (ROOT / "kata").rglob("*.py")
                      if "grade" not in p.relative_to(ROOT / "kata").parts[:1] and "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", LEARNER_PATH, ids=[str(p.relative_to(ROOT)) for p in LEARNER_PATH])
def test_the_learners_code_calls_nothing_linux_only(path: Path):
    """A /proc/ file may be read inside a try whose except catches OSError: a fallback for other systems."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    used |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    with_fallback = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Try)
                     and any(h.type is not None and "OSError" in ast.unparse(h.type) for h in node.handlers)
                     for part in node.body for n in ast.walk(part)}  # read where it exists, else something else
    used |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and n.value.startswith("/proc/") and id(n) not in with_fallback}
    found = {name for name in used for bad in LINUX_ONLY if name == bad or name.startswith(bad)}
    assert not found, f"{path.relative_to(ROOT)} uses {sorted(found)}: Linux only"


def test_the_grader_says_what_to_do_where_no_sandbox_can_be_made(monkeypatch):
    from kata.grade import sandbox

    sandbox.problem.cache_clear()
    monkeypatch.setattr("sys.platform", "darwin")
    try:
        assert "needs Linux" in sandbox.problem()
    finally:
        sandbox.problem.cache_clear()
    text = (ROOT / "kata/grade/__main__.py").read_text(encoding="utf-8")
    assert "on a trusted machine pass --unsandboxed" in text and "exist on Linux only" in text
