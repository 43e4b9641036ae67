"""The similarity figure (kata/grade/similarity.py) sees a hidden copy of the reference and leaves honest work low."""

import pytest

from kata.grade.similarity import similarity
from kata.harness.curriculum import EXERCISES
from kata.harness.target import ROOT
from tests.cheats import disguised

INDEPENDENT = sorted((ROOT / "tests/data/independent").glob("ex*.py"))


def reference(module: str) -> str:
    return (ROOT / "reference" / f"{module}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.id for ex in EXERCISES])
def test_a_renamed_reordered_padded_copy_reads_at_least_0_9(ex):
    source = reference(ex.module)
    copy = disguised(source)
    compile(copy, "copy", "exec")  # still a working module's shape
    assert similarity(copy, source) >= 0.9, similarity(copy, source)


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.id for ex in EXERCISES])
def test_the_untouched_stub_reads_at_most_0_5(ex):
    stub = (ROOT / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")
    assert similarity(stub, reference(ex.module)) <= 0.5


def test_at_least_three_independently_written_answers_are_kept():
    assert len(INDEPENDENT) >= 3, [p.name for p in INDEPENDENT]


@pytest.mark.parametrize("answer", INDEPENDENT, ids=[p.stem for p in INDEPENDENT])
def test_an_independently_written_correct_answer_reads_at_most_0_6(answer):
    assert similarity(answer.read_text(encoding="utf-8"), reference(answer.stem)) <= 0.6


def test_a_file_that_does_not_compile_reads_zero():
    assert similarity("def broken(:\n", reference("ex2_1_per_tensor")) == 0.0
