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


def test_an_unknown_target_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="must be one of exercises, reference; got 'solutions'"):
        target.resolve("solutions")


@pytest.mark.parametrize(("option", "environment", "chosen"), [
    ("reference", "exercises", ("reference", "option")),
    (None, "reference", ("reference", "environment")),
    (None, None, ("reference", "default")),
])
def test_the_option_beats_the_environment_which_beats_the_commands_default(monkeypatch, option, environment, chosen):
    monkeypatch.delenv(target.ENV_VAR, raising=False)
    if environment:
        monkeypatch.setenv(target.ENV_VAR, environment)
    assert target.choose(option, default="reference") == chosen


def test_without_a_default_the_target_is_the_learners_stubs(monkeypatch):
    monkeypatch.delenv(target.ENV_VAR, raising=False)
    assert target.resolve(None) == "exercises"


def test_a_target_whose_folder_is_missing_is_refused(monkeypatch, tmp_path):
    (tmp_path / "exercises").mkdir()
    monkeypatch.setattr(target, "ROOT", tmp_path)  # a class copy: no reference/
    with pytest.raises(ValueError, match="no reference/ folder here"):
        target.resolve("reference")


@pytest.mark.parametrize(("folders", "default"), [(("exercises", "reference"), "reference"),
                                                   (("exercises",), "exercises")])
def test_the_labs_default_is_the_reference_where_it_exists(monkeypatch, tmp_path, folders, default):
    for name in folders:
        (tmp_path / name).mkdir()
    monkeypatch.setattr(target, "ROOT", tmp_path)
    assert target.reference_if_present() == default


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
