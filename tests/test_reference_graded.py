"""The reference answers pass across the grading boundary (in a sandbox where one can be made): the tests the
learner runs in one process also hold when the answer runs in a worker and the judge sees proxies.

A fork holding every reference answer is graded on every exercise but the heavy ones (the registry's `heavy`: their
real-model calibration takes minutes here; `python -I -m kata.grade --answers FORK` on a fork of reference answers
grades all 19). A test that reads the answer's model in a way a proxy cannot serve fails here, not in a class.
"""

import json
import shutil

import pytest

from kata.harness.curriculum import EXERCISES
from kata.harness.target import ROOT
from tests.helpers import copy_checkout, grade_fork

LIGHT = [ex for ex in EXERCISES if not ex.heavy]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict]:
    fork = copy_checkout(tmp_path_factory.mktemp("fork"))
    for ex in LIGHT:
        shutil.copy(ROOT / "reference" / f"{ex.module}.py", fork / "exercises" / f"{ex.module}.py")
    out = tmp_path_factory.mktemp("out")
    proc = grade_fork(fork, out, "--only", ",".join(ex.id for ex in LIGHT), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {e["id"]: {**e, "failed": [t["name"] for t in data["tests"] if t["name"].startswith(f"{e['id']}::")
                                      and t["status"] != "pass"]} for e in data["quant_kata"]["exercises"]}


@pytest.mark.parametrize("ex", LIGHT, ids=[ex.id for ex in LIGHT])
def test_the_reference_answer_earns_full_points_across_the_boundary(graded, ex):
    result = graded[ex.id]
    assert result["points"] == result["max_points"], f"{ex.id}: {result['failed']}"
