"""No trivial answer earns a point (issue 33, "points only for substance"): for each kind of tests/trivial.py, every
exercise's answer is that trivial function, its tests run, and the grader's own scoring (kata/grade/results.py:
bad-input tests pay only as far as the value tests pass) gives 0 for every exercise.

The untouched stubs are graded the same way, and there every graded test must fail, bad-input tests included
(what `nox -s unsolved` checks through the whole grading pipeline).

The kinds run as pytest runs over all exercises (forks of processes that imported torch once, one per core side by
side), each exercise's tests in the learner's in-process harness, hypothesis failures not shrunk; the real-model
tests run for the answer that does nothing (returns its input), the one kind a model-level test could mistake for
the float model, and for the stubs.
"""

import os
import queue
from concurrent.futures import ThreadPoolExecutor

import pytest

from kata.grade.results import ExerciseResult, bad_input_tests, parse_junit, skip_reasons
from kata.harness.curriculum import EXERCISES
from kata.harness.target import ROOT
from tests.helpers import PytestForks, copy_kata
from tests.trivial import KINDS, trivial_answer

UNTOUCHED = "untouched stub"


def _grade_kind(servers: queue.Queue, scratch, kind: str) -> dict[str, ExerciseResult]:
    tree = copy_kata(scratch / kind.replace(" ", "_"))
    if kind != UNTOUCHED:
        for ex in EXERCISES:
            stub = (ROOT / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")
            (tree / "exercises" / f"{ex.module}.py").write_text(trivial_answer(stub, kind), encoding="utf-8")
    slow = ["--slow"] if kind in ("input", UNTOUCHED) else []
    xml = scratch / f"{kind.replace(' ', '_')}.xml"
    forks = servers.get()
    try:
        forks.run(tree, "exercises", "-p", "no:randomly", "-q", "--hypothesis-profile", "kata-no-shrink", *slow,
                  f"--junitxml={xml}", "-o", "junit_suite_name=trivial")
    finally:
        servers.put(forks)
    return _by_exercise(xml)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict[str, ExerciseResult]]:
    """kind → exercise id → its result under the grader's scoring."""
    scratch = tmp_path_factory.mktemp("trivial")
    workers = max(1, min(2, os.cpu_count() or 1))
    servers: queue.Queue = queue.Queue()
    cores = os.cpu_count() or 1
    started = [PytestForks(tmp_path_factory.mktemp(f"runs{i}"), max(1, cores // workers)) for i in range(workers)]
    for forks in started:
        servers.put(forks)
    try:
        with ThreadPoolExecutor(workers) as pool:
            runs = {kind: pool.submit(_grade_kind, servers, scratch, kind) for kind in (*KINDS, UNTOUCHED)}
        return {kind: run.result() for kind, run in runs.items()}
    finally:
        for forks in started:
            forks.close()


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


def test_every_graded_test_fails_on_the_untouched_stubs(graded):
    passing = [f"{i}::{t.name}" for i, r in graded[UNTOUCHED].items() for t in r.tests if t.status == "pass"]
    assert not passing, f"these graded tests pass on the stubs: {passing}"
    assert all(r.tests for r in graded[UNTOUCHED].values())


def test_a_trivial_answer_keeps_the_stubs_names():
    for ex in EXERCISES:
        stub = (ROOT / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")
        for kind in KINDS:
            compile(trivial_answer(stub, kind), ex.module, "exec")
