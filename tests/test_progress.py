"""The learner's self-check: progress table, not-started reports, hints."""

import pytest

from kata.__main__ import main as kata_cli
from kata.curriculum import BY_ID
from kata.progress import DONE, FAILING, NOT_STARTED, Outcomes, render
from tests.helpers import copy_kata, run_python


@pytest.mark.parametrize(("outcomes", "status"), [
    (Outcomes(passed=3), DONE),
    (Outcomes(not_started=3), NOT_STARTED),
    (Outcomes(passed=1, not_started=2), FAILING),
    (Outcomes(failed=1, not_started=2), FAILING),
])
def test_status_follows_the_outcomes(outcomes, status):
    assert outcomes.status == status


def test_the_table_counts_done_and_hints_the_first_unfinished():
    lines = render([(BY_ID["ex1_1"], Outcomes(passed=4)), (BY_ID["ex2_1"], Outcomes(failed=1, passed=2))], "x")
    text = "\n".join(lines)
    assert "done: 1/2" in text and "next: ex2_1" in text and BY_ID["ex2_1"].hints[0][1] in text


def test_on_the_stubs_the_run_shows_zero_done_and_no_failure_sections():
    proc = run_python("-m", "pytest", "exercises/test_ex1_1_weight_memory.py", "exercises/test_ex2_1_per_tensor.py")
    assert proc.returncode == 1
    out = proc.stdout
    assert "完成 / done: 0/2" in out and "未开始 not started" in out, out[-3000:]
    assert "下一步 / next: ex1_1" in out and "python -m kata hint ex1_1" in out
    assert "(36 个测试未开始" in out and "36 failed" in out, "not-started tests are summarised, and still count"
    assert "FAILURES" not in out and "raise NotImplementedError" not in out, "no section per untouched stub"


def test_an_exercise_that_does_not_import_shows_as_failing(tmp_path):
    copy_kata(tmp_path)
    (tmp_path / "exercises/ex1_2_format_table.py").write_text("def build_format_table(:\n")
    proc = run_python("-m", "pytest", "exercises/test_ex1_1_weight_memory.py", "exercises/test_ex1_2_format_table.py",
                      cwd=tmp_path)
    assert "✘ 未通过 failing" in proc.stdout and "ex1_2" in proc.stdout, proc.stdout[-3000:]


def test_hint_command_prints_every_hint_in_both_languages(capsys):
    assert kata_cli(["hint", "ex2_1"]) == 0
    out = capsys.readouterr().out
    assert all(zh in out and en in out for zh, en in BY_ID["ex2_1"].hints)


def test_hint_command_rejects_an_unknown_exercise(capsys):
    assert kata_cli(["hint", "ex99"]) == 2
    assert "ex99" in capsys.readouterr().err
