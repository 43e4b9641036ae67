"""No trivial answer earns a point (issue 33, "points only for substance"): for each kind of tests/trivial.py, every
exercise's answer is that trivial function, its tests run, and the grader's own scoring (kata/grade/results.py:
bad-input tests pay only as far as the value tests pass) gives 0 for every exercise.

The six kinds run as six pytest runs over all exercises (forks of one process that imported torch once), each
exercise's tests in the learner's in-process harness; the real-model tests run for the answer that does nothing
(returns its input), the one kind a model-level test could mistake for the float model.
"""

import pytest

from kata.grade.results import ExerciseResult, bad_input_tests, parse_junit, skip_reasons
from kata.harness.curriculum import EXERCISES
from kata.harness.target import ROOT
from tests.helpers import PytestForks, copy_kata
from tests.trivial import KINDS, trivial_answer


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict[str, ExerciseResult]]:
    """kind → exercise id → its result under the grader's scoring."""
    scratch = tmp_path_factory.mktemp("trivial")
    forks = PytestForks(scratch)
    out = {}
    try:
        for kind in KINDS:
            tree = copy_kata(scratch / kind)
            for ex in EXERCISES:
                stub = (ROOT / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")
                (tree / "exercises" / f"{ex.module}.py").write_text(trivial_answer(stub, kind), encoding="utf-8")
            slow = ["--slow"] if kind == "input" else []
            forks.run(tree, "exercises", "-p", "no:randomly", "-q", "--hypothesis-profile", "kata-no-shrink", *slow,
                      f"--junitxml={scratch / kind}.xml", "-o", "junit_suite_name=trivial")
            out[kind] = _by_exercise(scratch / f"{kind}.xml")
    finally:
        forks.close()
    return out


def _by_exercise(xml) -> dict[str, ExerciseResult]:
    results = {}
    allowed = skip_reasons(ROOT / "kata/harness/plugin.py", *(ROOT / ex.test_file for ex in EXERCISES))
    cases, _ = parse_junit(xml, {}, allowed, frozenset().union(*(bad_input_tests(ROOT / ex.test_file)
                                                                 for ex in EXERCISES)))
    for ex in EXERCISES:
        result = ExerciseResult(ex)
        result.tests = [c for c in cases if c.module == f"exercises.test_{ex.module}"]
        results[ex.id] = result
    return results


@pytest.mark.parametrize("kind", KINDS)
def test_a_trivial_answer_earns_nothing_in_any_exercise(graded, kind):
    results = graded[kind]
    assert all(r.tests for r in results.values()), [i for i, r in results.items() if not r.tests]
    earned = {i: (r.points, [t.name for t in r.tests if t.status == "pass" and not t.bad_input])
              for i, r in results.items() if r.points > 0}
    assert not earned, f"{kind}: {earned}"


def test_a_trivial_answer_keeps_the_stubs_names():
    for ex in EXERCISES:
        stub = (ROOT / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")
        for kind in KINDS:
            compile(trivial_answer(stub, kind), ex.module, "exec")
