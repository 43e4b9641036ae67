"""The learner's self-check: progress table, not-started reports, hints."""

import pytest

from kata.__main__ import main as kata_cli
from kata.harness.curriculum import BY_ID
from kata.harness.progress import DONE, FAILING, NOT_STARTED, Outcomes, render
from kata.harness.target import ROOT
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
    assert "(34 个测试未开始" in out and "34 failed" in out, "not-started tests are summarised, and still count"
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


def test_a_single_exercise_that_passes_points_to_the_next_one():
    proc = run_python("-m", "pytest", "exercises/test_ex1_1_weight_memory.py", "--target", "reference")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "next: ex1_2" in proc.stdout and "well done" not in proc.stdout, proc.stdout[-1500:]


def test_real_model_tests_are_skipped_by_default_and_the_table_says_how_to_run_them():
    proc = run_python("-m", "pytest", "exercises/test_ex5_5_awq.py", "--target", "reference")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "(+1 真实模型未运行 / real-model not run)" in proc.stdout
    assert "1 real-model tests skipped" in proc.stdout and "pytest exercises --slow" in proc.stdout


def test_what_a_real_model_test_measured_is_printed_even_when_it_fails(tmp_path):
    (tmp_path / "test_measure.py").write_text(
        "def test_kl(record_property):\n"
        "    record_property('measured', 'KL 0.4321 vs RTN 0.3000')\n"
        "    assert False\n")
    proc = run_python("-m", "pytest", str(tmp_path / "test_measure.py"), "-p", "kata.harness.plugin", cwd=tmp_path,
                      env={"PYTHONPATH": str(ROOT)})
    assert "实测 / measured" in proc.stdout and "KL 0.4321 vs RTN 0.3000 — failed" in proc.stdout, proc.stdout[-1500:]


def test_a_not_implemented_error_from_torch_is_a_failure_not_an_untouched_stub(tmp_path):
    copy_kata(tmp_path)
    (tmp_path / "exercises/ex1_1_weight_memory.py").write_text(
        "def bits_per_weight(dtype, group_size=None, scale_bits=16, zero_point_bits=0):\n"
        "    raise NotImplementedError(\"Could not run 'aten::_weight_int4pack_mm' with arguments from the 'CPU' \"\n"
        "                              'backend')\n\n\n"
        "def calculate_weight_memory(num_params_b, dtype, group_size=None):\n"
        "    return num_params_b * bits_per_weight(dtype, group_size) / 8\n")
    proc = run_python("-m", "pytest", "exercises/test_ex1_1_weight_memory.py", cwd=tmp_path)
    assert "✘ 未通过 failing" in proc.stdout and "FAILURES" in proc.stdout, proc.stdout[-3000:]
    assert "aten::_weight_int4pack_mm" in proc.stdout and "未开始 not started" not in proc.stdout


def test_an_unknown_target_is_a_plain_usage_error():
    proc = run_python("-m", "pytest", "exercises/test_ex1_1_weight_memory.py", env={"KATA_TARGET": "bad"})
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "INTERNALERROR" not in proc.stdout + proc.stderr
    assert "must be one of" in proc.stderr


def test_the_curriculum_list_lines_up_its_columns_with_chinese_chapter_names(capsys):
    from kata.harness.progress import display_width

    assert kata_cli(["list"]) == 0
    starts = {display_width(line[:line.index("exercises/")]) for line in capsys.readouterr().out.splitlines()}
    assert len(starts) == 1, f"the exercises/ column starts at different display columns: {starts}"


def test_an_exercise_that_calls_another_unsolved_stub_is_failing_and_says_which(tmp_path):
    copy_kata(tmp_path)
    # A learner's 2.2 that reuses their own 2.1, still a stub.
    (tmp_path / "exercises/ex2_2_quant_error.py").write_text(
        (ROOT / "reference/ex2_2_quant_error.py").read_text(encoding="utf-8").replace(
            "def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:\n",
            "def quantization_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:\n"
            "    from exercises.ex2_1_per_tensor import quantize_per_tensor\n"
            "    quantize_per_tensor(x)\n"), encoding="utf-8")
    proc = run_python("-m", "pytest", "exercises/test_ex2_2_quant_error.py", cwd=tmp_path)
    assert "✘ 未通过 failing" in proc.stdout and "calls ex2_1_per_tensor, which is still a stub" in proc.stdout, \
        proc.stdout[-3000:]


def test_an_exercise_whose_tests_need_a_missing_package_is_listed_with_what_to_install(tmp_path):
    copy_kata(tmp_path)
    test_file = tmp_path / "exercises/test_ex5_10_int4_kernel.py"
    test_file.write_text(test_file.read_text(encoding="utf-8").replace(
        'pytest.importorskip("triton"', 'pytest.importorskip("a_package_that_is_not_installed"'), encoding="utf-8")
    proc = run_python("-m", "pytest", "exercises/test_ex5_9_qat.py", "exercises/test_ex5_10_int4_kernel.py",
                      "-p", "no:randomly", cwd=tmp_path)
    line = next((row for row in proc.stdout.splitlines() if " ex5_10 " in row), "")
    assert "缺依赖 needs install" in line and 'pip install -e ".[kernel]"' in line, proc.stdout[-3000:]
    assert "完成 / done: 0/2" in proc.stdout, "the table still counts it among the exercises"


def test_the_hint_is_the_one_keyed_to_the_failing_test():
    ex = BY_ID["ex1_1"]
    lines = "\n".join(render([(ex, Outcomes(passed=3, failed=1,
                                            first_failure="test_an_unknown_dtype_is_a_value_error_listing_valid_names"))],
                             "x"))
    assert ex.hints[2][1] in lines and ex.hints[0][1] not in lines, lines
    assert ex.hint_for("test_something_no_key_names") == ex.hints[0], "without a key: the first hint"


def test_a_learners_run_goes_in_the_chapters_order():
    proc = run_python("-m", "pytest", "exercises/test_ex5_11_sensitivity.py", "exercises/test_ex5_1_granularity.py",
                      "exercises/test_ex1_1_weight_memory.py", "--collect-only", "-q", "-p", "no:randomly")
    files = [line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line]
    order = list(dict.fromkeys(files))
    assert order == ["exercises/test_ex1_1_weight_memory.py", "exercises/test_ex5_1_granularity.py",
                     "exercises/test_ex5_11_sensitivity.py"], order
