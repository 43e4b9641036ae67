"""The mutation score counts a mutant as caught when a test fails or hangs, and not when no test runs it."""

import json

from kata import mutation_score


def test_killed_and_timed_out_mutants_count_survivors_and_untested_ones_do_not(tmp_path):
    codes = {"m1": 1, "m2": 36, "m3": 0, "m4": 33, "m5": None}  # killed, timeout, survived, no tests, not run
    counts, score = mutation_score.score(codes)
    assert (counts["killed"], counts["timeout"], counts["survived"], counts["no tests"], counts["not run"]) == \
        (1, 1, 1, 1, 1)
    assert score == 50.0  # 2 caught of the 4 that ran or could not


def test_an_exercise_whose_mutants_have_not_run_has_no_score():
    assert mutation_score.score({"m1": None})[1] is None


def test_results_are_read_per_exercise_from_mutmuts_meta_files(tmp_path):
    (tmp_path / "reference").mkdir()
    meta = {"exit_code_by_key": {"reference.ex2_1_per_tensor.x_quantize_per_tensor__mutmut_1": 1}}
    (tmp_path / "reference/ex2_1_per_tensor.py.meta").write_text(json.dumps(meta))
    assert mutation_score.results(tmp_path) == {"ex2_1_per_tensor": meta["exit_code_by_key"]}
