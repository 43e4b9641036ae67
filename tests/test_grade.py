"""The grader: promised outputs, and each fault in an answer costs only that exercise, results.json intact."""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from kata.grade import sandbox
from kata.grade.results import CaseResult, ExerciseResult, parse_junit, results_json, skip_reasons
from kata.grade.similarity import similarity
from kata.harness.curriculum import BY_ID
from kata.harness.target import ROOT
from tests.helpers import copy_checkout, grade_fork

# In a sandbox the grading copy is read-only and ex5_1's deletion fails; without one it happens, and the check of the
# copy after the run finds it.
SANDBOXED = sandbox.problem() is None
FAULTS = {  # exercise → code appended to its stub that breaks it in one way; each must cost only that exercise
    "ex1_2": "def broken(\n",  # a syntax error
    "ex2_1": "import a_module_that_does_not_exist\n",  # an import error
    "ex2_2": "def quantization_error(*args, **kwargs):\n    while True:\n        pass\n",  # an infinite loop
    "ex3_1": "import os\n\n\ndef savings_vs_error(*args, **kwargs):\n    os._exit(3)\n",  # the process dies mid-run
    "ex3_2": "import torch\nHUGE = torch.ones(10 * 2**30, dtype=torch.uint8)\n",  # a 10 GB allocation
    "ex4_1": "print('x' * 100_000_000)\n",  # 100 MB on stdout
    # Deletes the harness while its tests run, in a way the static scan does not see.
    "ex5_1": "from pathlib import Path\nfor p in Path(__file__).resolve().parents[1].glob('kata/*.py'):\n"
             "    getattr(p, 'un' + 'link')()\n",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade a fork where ex1_1 is solved, each exercise of FAULTS is broken and a test file was edited."""
    fork = copy_checkout(tmp_path_factory.mktemp("fork"))
    shutil.copy(ROOT / "reference/ex1_1_weight_memory.py", fork / "exercises/ex1_1_weight_memory.py")
    for ex, code in FAULTS.items():
        answer = fork / "exercises" / f"{BY_ID[ex].module}.py"
        answer.write_text(answer.read_text(encoding="utf-8") + "\n" + code, encoding="utf-8")
    (fork / "exercises/test_ex1_1_weight_memory.py").write_text("def test_nothing():\n    pass\n")
    out = tmp_path_factory.mktemp("out")
    # The scan would refuse some of these before they run (os._exit, pathlib): here the run itself must contain them.
    proc = grade_fork(fork, out, "--only", ",".join(["ex1_1", *FAULTS]), "--timeout", "20", "--memory-gib", "6",
                      "--skip-scan")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (out / "stdout.txt").write_text(proc.stdout, encoding="utf-8")
    return out


def _exercises(graded) -> dict[str, dict]:
    return {e["id"]: e for e in json.loads((graded / "results.json").read_text())["quant_kata"]["exercises"]}


def _messages(graded, ex: str) -> str:
    tests = json.loads((graded / "results.json").read_text())["tests"]
    return "\n".join(t["message"] or "" for t in tests if t["name"].startswith(f"{ex}::"))


def test_results_json_has_the_exercism_v3_shape_with_task_ids(graded):
    data = json.loads((graded / "results.json").read_text(encoding="utf-8"))
    assert data["version"] == 3 and data["status"] == "fail" and data["message"] is None
    for test in data["tests"]:
        # exercism v3's fields, and each test's points (GitHub Classroom's reporter sums `score`)
        assert set(test) == {"name", "status", "message", "output", "test_code", "task_id", "score", "max_score",
                             "bad_input"}
        assert test["status"] in {"pass", "fail", "error"}
    assert {t["task_id"] for t in data["tests"]} == set(range(1, 2 + len(FAULTS)))


def test_a_solved_exercise_scores_full_points_beside_broken_ones(graded):
    exercises = _exercises(graded)
    assert exercises["ex1_1"]["points"] == exercises["ex1_1"]["max_points"] > 0
    assert exercises["ex1_1"]["total"] > 1, "ex1_1 must be graded by upstream's tests, not the fork's edited file"
    for ex in FAULTS:
        assert exercises[ex]["points"] == 0, ex


@pytest.mark.parametrize(("ex", "said"), [
    ("ex1_2", "SyntaxError"), ("ex2_1", "a_module_that_does_not_exist"), ("ex2_2", "timed out after 20 s"),
    ("ex3_1", "exit 3"), ("ex3_2", "alloc"), ("ex5_1", "Read-only file system" if SANDBOXED else "deleted kata/"),
])
def test_each_fault_is_reported_in_its_own_exercise(graded, ex, said):
    assert said in _messages(graded, ex) + " ".join(_exercises(graded)[ex]["forgery"]), _messages(graded, ex)[:800]


def test_a_hundred_megabytes_of_output_leave_the_results_small(graded):
    assert (graded / "results.json").stat().st_size < 2_000_000
    assert all(len(t["message"] or "") <= 2000 for t in json.loads((graded / "results.json").read_text())["tests"])


def test_passing_tests_carry_their_source(graded):
    tests = json.loads((graded / "results.json").read_text())["tests"]
    first = next(t for t in tests if t["name"] == "ex1_1::test_calculate_weight_memory")
    assert first["test_code"].startswith("def test_calculate_weight_memory")


def test_junit_xml_merges_every_exercise(graded):
    root = ET.parse(graded / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert {s.get("name") for s in root.iter("testsuite")} >= {"ex1_1", "ex2_2"}


def test_the_markdown_summary_has_a_table_a_total_and_the_changed_files(graded):
    text = (graded / "summary.md").read_text(encoding="utf-8")
    assert "| ✅ | ex1_1" in text and "| ❌ | ex2_2" in text
    assert ("| ❌ | ex5_1" if SANDBOXED else "| 🚫 | ex5_1") in text
    assert f"total: {BY_ID['ex1_1'].points:g} / {(1 + len(FAULTS)) * 10}" in text
    assert "`M exercises/test_ex1_1_weight_memory.py`" in text and "grading used upstream's versions" in text


def test_each_exercise_is_printed_as_it_finishes(graded):
    out = (graded / "stdout.txt").read_text(encoding="utf-8")
    assert f"grading {1 + len(FAULTS)} exercises" in out
    assert all(f"  {ex} " in out for ex in ("ex1_1", *FAULTS)), out


def test_a_grader_failure_is_still_a_v3_document():
    result = ExerciseResult(BY_ID["ex1_1"], [CaseResult("t", "pass")])
    data = results_json([result], "exercises", error="boom")
    assert data["status"] == "error" and data["message"] == "boom" and data["tests"][0]["task_id"] == 1


def test_only_the_harnesss_own_skips_leave_the_denominator(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text('<testsuite><testcase name="test_gpu"><skipped message="没有 CUDA GPU / no CUDA GPU"/></testcase>'
                   '<testcase name="test_forged"><skipped message="没有 CUDA GPU"/></testcase>'
                   '<testcase name="test_plain"/></testsuite>', encoding="utf-8")
    allowed = skip_reasons(ROOT / "kata/harness/plugin.py")
    cases, _ = parse_junit(xml, {}, allowed)
    assert [(c.name, c.status) for c in cases] == [("test_forged", "fail"), ("test_plain", "pass")]
    assert "a skip the harness did not ask for" in cases[0].message


def test_a_renamed_copy_of_the_reference_reads_as_one_and_the_stub_does_not():
    reference = (ROOT / "reference/ex5_6_gptq.py").read_text(encoding="utf-8")
    renamed = reference.replace("H", "hessian").replace("# ", "# note: ")
    assert similarity(renamed, reference) > 0.99
    assert similarity((ROOT / "exercises/ex5_6_gptq.py").read_text(encoding="utf-8"), reference) < 0.6
