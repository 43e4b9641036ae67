"""The mutation score counts a mutant as caught when a test fails or hangs, and not when no test runs it."""

import json

from kata.grade import mutation_score


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


SOURCE = '''
def x_scale__mutmut_orig(x):
    return x * 2


def x_scale__mutmut_1(x):
    return x * 3


class Layer:
    def xǁLayerǁforward__mutmut_orig(self, x):
        y = x + 1
        return y

    def xǁLayerǁforward__mutmut_1(self, x):
        y = x - 1
        return y
'''


def test_each_mutant_is_told_by_the_line_it_changed():
    assert mutation_score.mutated_lines(SOURCE) == {"x_scale__mutmut_1": "return x * 3",
                                                    "xǁLayerǁforward__mutmut_1": "y = x - 1"}


def test_mutant_names_map_to_the_functions_they_mutate():
    assert mutation_score.function_of("reference.ex2_1_per_tensor.x_quantize_per_tensor__mutmut_31") == \
        "quantize_per_tensor"
    assert mutation_score.function_of("reference.ex5_7_smoothquant.xǁW8A8Linearǁfrom_weight__mutmut_2") == \
        "W8A8Linear.from_weight"


def test_a_survivor_is_explained_only_by_an_entry_of_its_module_function_and_line():
    known = (mutation_score.Survivor("equivalent", "ex2_1_per_tensor", "quantize_per_tensor", r"torch\.clamp", "why"),)
    name = "reference.ex2_1_per_tensor.x_quantize_per_tensor__mutmut_31"
    assert mutation_score.explain("ex2_1_per_tensor", name, "q = torch.clamp(x)", known) == known[0]
    assert mutation_score.explain("ex2_1_per_tensor", name, "q = x", known) is None
    assert mutation_score.explain("ex2_2_quant_error", name, "q = torch.clamp(x)", known) is None


def test_equivalent_survivors_leave_the_total():
    assert mutation_score.score({"m1": 1, "m2": 0}, equivalent=1)[1] == 100.0


def test_every_explanation_is_equivalent_or_cuda_and_its_pattern_compiles():
    import re

    for known in mutation_score.SURVIVORS:
        assert known.kind in ("equivalent", "cuda") and known.reason, known
        re.compile(known.line)
