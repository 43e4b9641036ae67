"""The --target switch, $KATA_TARGET and the guard against modules from the wrong folder."""

import types

import pytest

from kata.harness import target
from tests.helpers import run_python

ONE_TEST_FILE = "exercises/test_ex1_1_weight_memory.py"


def test_the_reference_target_is_named_in_the_header_and_passes():
    proc = run_python("-m", "pytest", ONE_TEST_FILE, "--target", "reference")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "quant-kata target: reference" in proc.stdout


def test_the_environment_variable_selects_the_target():
    proc = run_python("-m", "pytest", ONE_TEST_FILE, env={"KATA_TARGET": "reference"})
    assert proc.returncode == 0 and "quant-kata target: reference" in proc.stdout, proc.stdout[-2000:]


def test_the_default_target_is_the_learners_stubs():
    proc = run_python("-m", "pytest", ONE_TEST_FILE)
    assert proc.returncode == 1 and "quant-kata target: exercises" in proc.stdout, proc.stdout[-2000:]


def test_an_unknown_target_is_refused():
    with pytest.raises(ValueError, match="target"):
        target.resolve("solutions")


def test_wrong_origins_names_a_module_from_the_other_folder():
    stub = types.ModuleType("exercises.ex1_1_weight_memory")
    stub.__file__ = str(target.folder("exercises") / "ex1_1_weight_memory.py")
    assert target.wrong_origins("reference", {stub.__name__: stub}) == [f"{stub.__name__} ← {stub.__file__}"]
    assert target.wrong_origins("exercises", {stub.__name__: stub}) == []


def test_the_guard_stops_a_run_that_imported_the_stub_under_the_reference_target(tmp_path):
    # A plugin imported before the switch is installed pulls the stub in; the guard must notice.
    (tmp_path / "early_stub_import.py").write_text("import exercises.ex1_1_weight_memory\n")
    proc = run_python("-m", "pytest", ONE_TEST_FILE, "--target", "reference", "-p", "early_stub_import",
                      env={"PYTHONPATH": f"{tmp_path}:{target.ROOT}"})
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "target mismatch" in proc.stdout + proc.stderr
