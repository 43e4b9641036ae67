"""Every exercise has a stub, a test module and a reference with the same public API; stubs raise."""

import ast
import inspect
import shutil

import pytest

from kata.harness.curriculum import EXERCISES
from kata.harness.target import ROOT
from tests.helpers import copy_kata, load_file, run_python

IDS = [ex.id for ex in EXERCISES]


def public_definitions(path) -> dict[str, ast.AST]:
    """Top-level functions, classes and UPPER_CASE constants a module defines itself (not imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()})
    return names


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_every_exercise_has_a_stub_a_test_module_and_a_reference(ex):
    for path in (f"exercises/{ex.module}.py", ex.test_file, f"reference/{ex.module}.py"):
        assert (ROOT / path).is_file(), f"missing {path}"


def test_every_exercise_file_is_in_the_curriculum():
    modules = {ex.module for ex in EXERCISES}
    for folder in ("exercises", "reference"):
        on_disk = {p.stem for p in (ROOT / folder).glob("ex*.py")}
        assert on_disk == modules, f"{folder}/ and the curriculum differ: {on_disk ^ modules}"
    tests = {p.stem.removeprefix("test_") for p in (ROOT / "exercises").glob("test_ex*.py")}
    assert tests == modules, f"exercises/test_*.py and the curriculum differ: {tests ^ modules}"


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_stub_and_reference_have_the_same_public_names_and_signatures(ex):
    stub_path, ref_path = ROOT / "exercises" / f"{ex.module}.py", ROOT / "reference" / f"{ex.module}.py"
    stub_names, ref_names = public_definitions(stub_path), public_definitions(ref_path)
    assert stub_names.keys() == ref_names.keys(), f"public names differ: {stub_names.keys() ^ ref_names.keys()}"
    stub, ref = load_file(stub_path, f"_stub_{ex.id}"), load_file(ref_path, f"_ref_{ex.id}")
    for name in stub_names:
        if callable(getattr(stub, name)):
            assert inspect.signature(getattr(stub, name)) == inspect.signature(getattr(ref, name)), name
        else:
            assert getattr(stub, name) == getattr(ref, name), f"constant {name} differs"


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_every_stub_function_raises_not_implemented_with_a_hint(ex):
    for name, node in public_definitions(ROOT / "exercises" / f"{ex.module}.py").items():
        if not isinstance(node, ast.FunctionDef):
            continue
        last = node.body[-1]
        assert isinstance(last, ast.Raise) and "NotImplementedError" in ast.unparse(last), \
            f"{ex.module}.{name} must end with raise NotImplementedError(...)"
        assert f"kata hint {ex.id}" in ast.unparse(last), f"{ex.module}.{name}: the error should point to the hint"


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_every_exercise_has_bilingual_hints_and_a_docstring(ex):
    assert ex.hints and all(zh and en for zh, en in ex.hints), ex.id
    doc = ast.get_docstring(ast.parse((ROOT / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")))
    assert doc and ex.chapter.split(" ")[0] in doc, f"{ex.module}: docstring should name chapter {ex.chapter}"


@pytest.mark.parametrize("ex", EXERCISES, ids=IDS)
def test_a_reference_uses_no_other_exercises_code(ex):
    tree = ast.parse((ROOT / "reference" / f"{ex.module}.py").read_text(encoding="utf-8"))
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    foreign = [name for name in imported if name.split(".")[0] in ("reference", "exercises")]
    assert not foreign, f"reference/{ex.module}.py imports {foreign}: each exercise must stand on its own code"


@pytest.mark.parametrize("module", ["ex5_3_quant_linear", "ex5_5_awq", "ex5_6_gptq"])
def test_a_later_exercise_passes_with_every_other_exercise_unsolved(tmp_path, module):
    # The learner solved only this exercise; 5.1 and 5.2 are untouched stubs and reference/ is gone.
    copy_kata(tmp_path)
    shutil.rmtree(tmp_path / "reference")
    shutil.copy(ROOT / "reference" / f"{module}.py", tmp_path / "exercises" / f"{module}.py")
    proc = run_python("-m", "pytest", f"exercises/test_{module}.py", "-m", "not slow", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.slow
def test_the_lab_runs_to_the_end_in_a_copy_without_reference(tmp_path):
    # A class copy: the instructor deleted reference/; the lab falls back to the stubs and says so.
    copy_kata(tmp_path)
    shutil.rmtree(tmp_path / "reference")
    proc = run_python("-m", "kata.lab", "--quick", "--out", str(tmp_path / "report.md"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "target: exercises (the default without reference/" in proc.stdout, proc.stdout[:2000]
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.count("not implemented yet") == 5 and "target `exercises`" in report, report
