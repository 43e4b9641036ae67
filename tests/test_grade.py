"""The grader: promised outputs, and one broken exercise costs only that exercise."""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from kata.curriculum import BY_ID
from kata.grade import CaseResult, ExerciseResult, results_json
from kata.target import ROOT
from tests.helpers import copy_kata, run_python


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade a copy of the kata where ex1_1 is solved, ex2_1 has a syntax error and ex2_2 hangs on import."""
    repo = copy_kata(tmp_path_factory.mktemp("fork"))
    shutil.copy(ROOT / "reference/ex1_1_weight_memory.py", repo / "exercises/ex1_1_weight_memory.py")
    (repo / "exercises/ex2_1_per_tensor.py").write_text("def quantize_per_tensor(x, num_bits=8)\n    return x\n")
    (repo / "exercises/ex2_2_quant_error.py").write_text("import time\ntime.sleep(600)\n")
    proc = run_python("-m", "kata.grade", "--only", "ex1_1,ex2_1,ex2_2", "--timeout", "15", "--out", "out",
                      "--edited", "exercises/test_ex1_1_weight_memory.py", cwd=repo)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (repo / "out" / "stdout.txt").write_text(proc.stdout, encoding="utf-8")
    return repo / "out"


def test_results_json_has_the_exercism_v3_shape_with_task_ids(graded):
    data = json.loads((graded / "results.json").read_text(encoding="utf-8"))
    assert data["version"] == 3 and data["status"] == "fail" and data["message"] is None
    for test in data["tests"]:
        assert set(test) == {"name", "status", "message", "output", "test_code", "task_id"}
        assert test["status"] in {"pass", "fail", "error"}
    assert {t["task_id"] for t in data["tests"]} == {1, 2, 3}


def test_a_solved_exercise_scores_full_points_beside_broken_ones(graded):
    exercises = {e["id"]: e for e in json.loads((graded / "results.json").read_text())["quant_kata"]["exercises"]}
    assert exercises["ex1_1"]["points"] == exercises["ex1_1"]["max_points"] > 0
    assert exercises["ex2_1"]["points"] == 0 and exercises["ex2_2"]["points"] == 0


def test_a_syntax_error_and_a_hang_are_reported_as_errors(graded):
    tests = json.loads((graded / "results.json").read_text())["tests"]
    by_task = {task: [t for t in tests if t["task_id"] == task] for task in (2, 3)}
    assert all(t["status"] == "error" for t in by_task[2]) and by_task[2]
    assert "timed out" in by_task[3][0]["message"]


def test_passing_tests_carry_their_source(graded):
    tests = json.loads((graded / "results.json").read_text())["tests"]
    first = next(t for t in tests if t["name"] == "ex1_1::test_calculate_weight_memory")
    assert first["test_code"].startswith("def test_calculate_weight_memory")


def test_junit_xml_merges_every_exercise(graded):
    root = ET.parse(graded / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert {s.get("name") for s in root.iter("testsuite")} >= {"ex1_1", "ex2_2"}


def test_the_markdown_summary_has_a_table_a_total_and_the_edit_warning(graded):
    text = (graded / "summary.md").read_text(encoding="utf-8")
    assert "| ✅ | ex1_1" in text and "| ❌ | ex2_2" in text
    assert f"total: {BY_ID['ex1_1'].points:g} / {3 * 10}" in text
    assert "exercises/test_ex1_1_weight_memory.py" in text and "restored from upstream" in text


def test_each_exercise_is_printed_as_it_finishes(graded):
    out = (graded / "stdout.txt").read_text(encoding="utf-8")
    assert "grading 3 exercises" in out
    assert all(f"  {ex} " in out for ex in ("ex1_1", "ex2_1", "ex2_2")), out


def test_a_grader_failure_is_still_a_v3_document():
    result = ExerciseResult(BY_ID["ex1_1"], [CaseResult("t", "pass")])
    data = results_json([result], "exercises", error="boom")
    assert data["status"] == "error" and data["message"] == "boom" and data["tests"][0]["task_id"] == 1
