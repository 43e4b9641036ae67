"""Surviving mutants that no CPU test can kill, and why (read by kata.grade.mutation_score).

存活变异体的解释：每条给出练习模块、函数、匹配变异后那一行的正则，以及原因。
Each entry names the exercise module (or "*"), the function (or "*"), a regular expression searched in the
mutated line(s) and the reason. Two kinds:
  equivalent — the mutant computes the same thing (or, for error messages, still names the argument, which is
               what the tests promise); the score "without equivalents" leaves these out;
  cuda       — the mutant changes a path that only runs on a CUDA GPU (5.10's split-K and device placement);
               the CPU mutation run cannot reach it, so it stays counted as a survivor. On an H100 (torch 2.11,
               Triton 3.6, 2026-11-25) 5.10's tests killed all ten: each put in reference/ alone, then
               pytest exercises/test_ex5_10_int4_kernel.py --target reference.
A survivor matched by no entry is listed as unexplained: kill it with a test or explain it here.
"""

from __future__ import annotations

from typing import NamedTuple


class Survivor(NamedTuple):
    kind: str  # "equivalent" or "cuda"
    module: str
    function: str
    line: str  # regular expression, searched in the mutated line(s)
    reason: str


NEVER_BINDS = ("scale = max|x| / qmax makes |x / scale| ≤ qmax (float rounding stays below qmax + 0.5), so round() "
               "is already in range: the clamp never binds, whatever its bounds")

SURVIVORS: tuple[Survivor, ...] = (
    # Clamps that cannot bind.
    Survivor("equivalent", "ex2_1_per_tensor", "quantize_per_tensor", r"^q = torch\.clamp\(torch\.round", NEVER_BINDS),
    Survivor("equivalent", "ex5_7_smoothquant", "quantize_activations", r"^q = torch\.clamp\(torch\.round",
             NEVER_BINDS),
    Survivor("equivalent", "ex5_7_smoothquant", "W8A8Linear.from_weight", r"^layer\.qweight\.copy_\(torch\.clamp",
             NEVER_BINDS),
    Survivor("equivalent", "ex5_1_granularity", "choose_qparams", r"^zero_point = torch\.round\(-lo / scale\)\.clamp",
             "the range [lo, hi] always holds 0, so round(−lo / scale) is already in [0, 2^b − 1]"),
    # Arguments equal to the default they are replaced by.
    Survivor("equivalent", "*", "*", r"^check_float_tensor\(x, (allow_empty=False)?\)$",
             "check_float_tensor names its tensor \"x\" by default: the same message"),
    Survivor("equivalent", "*", "*", r"^check_float_tensor\(\w+, \"\w+\", allow_empty=None\)$",
             "None is falsy, as False is"),
    Survivor("equivalent", "*", "*", r"^check_num_bits\(num_bits, 2, \)$",
             "check_num_bits' upper bound is 8 by default"),
    Survivor("equivalent", "ex5_8_compare_formats", "NF4Linear.__init__", r"persistent=None",
             "None is falsy, as False is"),
    Survivor("equivalent", "*", "*", r"dtype=None\)|torch\.(eye|ones|zeros|linspace)\([^=]*, \)|"
             r"\(M, N, device=x\.device, \)",
             "float32 is torch's default dtype, and the dtype the argument names on these paths"),
    Survivor("equivalent", "*", "*", r'float\("INF"\)', 'float("INF") is inf'),
    Survivor("equivalent", "ex5_6_gptq", "gptq_quantize_layer", r"group_qparams\(cols, num_bits, symmetric=symmetric\)",
             "group_qparams' group_size is None by default, the value dropped"),
    Survivor("equivalent", "ex5_9_qat", "qat_finetune", r"torch\.randint\(ids\.shape\[0\], ",
             "randint's low bound is 0 by default"),
    # Casts that change nothing for the values involved.
    Survivor("equivalent", "ex3_1_savings_vs_error", "savings_vs_error", r"x\.to\(torch\.float16\)\.to\(None\)",
             "the fp16 copy holds the same values; the error against x is computed in float32 by promotion"),
    Survivor("equivalent", "ex5_1_granularity", "dequantize", r"q\.to\(None\)",
             "int8 codes minus int32 zero points promote to int32: the same differences"),
    Survivor("equivalent", "ex5_2_int4_packing", "unpack_int4", r"nibbles\.to\(None\)",
             "nibbles are 0 … 15 and the result is cast to int8: the same values either way"),
    Survivor("equivalent", "ex5_3_quant_linear", "QuantLinear.dequantized_weight", r"zeros_like\(self\.scale",
             "a zero point of 0 in any dtype subtracts nothing"),
    Survivor("equivalent", "ex5_8_compare_formats", "FP8Linear.from_linear", r"\(w / scale\)\.to\(None\)",
             "copy_ into the float8 buffer rounds to the nearest E4M3 value, as the cast it replaces did"),
    # Same arithmetic, reordered or redundant.
    Survivor("equivalent", "ex4_1_self_check", "ptq_floor", r"\(bits \+ bits\.mean\(\)\)|\(db \+ db\.mean\(\)\)",
             "Σ(d − d̄) = 0, so ±mean in one factor of the covariance Σ(b − b̄)(d − d̄) changes nothing"),
    Survivor("equivalent", "ex3_2_conservative", "recommend_scheme", r"b >= target_bits",
             "target_bits itself already failed the bar just before this loop"),
    Survivor("equivalent", "ex5_4_calibration", "HessianAccumulator.add", r"self\.H\.shape\[1\]",
             "H is square: shape[1] == shape[0]"),
    Survivor("equivalent", "ex5_6_gptq", "gptq_quantize_layer", r"^H\[dead, dead\] = ",
             "a dead input's weights are zeroed, so its Hessian diagonal only has to be positive"),
    Survivor("equivalent", "ex5_6_gptq", "gptq_quantize_layer", r"group_params = \{\} if \(group_size\) and False",
             "groups are keyed by their index: an extra whole-row entry under None is never read"),
    Survivor("equivalent", "ex5_3_quant_linear", "quantize_model", r"if \(parent_name\) or True",
             "get_submodule(\"\") is the model itself"),
    Survivor("equivalent", "*", "*", r"_convert_weight_to_int4pack_for_cpu\(.*, 2\)",
             "inner_k_tiles tiles the CUDA layout; torch's CPU packing ignores it"),
    Survivor("equivalent", "ex5_2_int4_packing", "measure_weight_bytes", r"quantize\(w, (9, None|8, )\)",
             "only nbytes of the int8 codes is measured, and quantize's group_size is None by default"),
    Survivor("equivalent", "ex5_8_compare_formats", "nf4_codebook", r"Normal\(0\.0, 2\.0\)",
             "the codebook is divided by its largest value: the normal's σ cancels"),
    Survivor("equivalent", "ex5_8_compare_formats", "NF4Linear.dequantized_weight", r"\.flatten\((\+2|-3)\)",
             "the codes are indexed and reshaped to (out, groups, group_size) right after: any flattening order of "
             "the same (out, in/2, 2) layout gives the same sequence"),
    Survivor("equivalent", "ex5_8_compare_formats", "compare_formats", r"lambda message: 0",
             "the default progress callback's return value is ignored"),
    Survivor("equivalent", "ex5_1_granularity", "mse_clip_ratio", r"better = err <= best_err",
             "only ties differ: both ratios then give the least error, as the docstring asks"),
    Survivor("equivalent", "ex5_9_qat", "qat_finetune", r"manual_seed\(1\)", "any fixed seed repeats exactly"),
    Survivor("equivalent", "ex5_9_qat", "qat_finetune", r"^param\.requires_grad_\(True\)$",
             "Adam holds only the QAT parameters: the others get gradients but never change"),
    Survivor("equivalent", "ex5_10_int4_kernel", "prepare", r"^words = torch\.where\(",
             "int64 → int32 keeps the low 32 bits (two's complement): a wrap off by a multiple of 2³², or none, "
             "gives the same int32"),
    Survivor("equivalent", "ex5_10_int4_kernel", "prepare", r"\.view\(8, 1\)",
             "(8, 1) broadcasts against (K/8, 8, N) exactly as (1, 8, 1)"),
    Survivor("equivalent", "ex5_10_int4_kernel", "quantized_matmul", r"split = grid\[2\] >= 1|\(split\) or True",
             "a zeroed buffer where an uninitialised one would do: slower, same values"),
    Survivor("equivalent", "ex5_10_int4_kernel", "quantized_matmul", r"_launch\(.*, None\)$",
             "without the SM count K is never split: slower on a GPU, the same values (survived on the H100 too)"),
    Survivor("equivalent", "ex5_11_sensitivity", "plan_precision", r"isinstance\(budget_bits, bool\) and not",
             "True is 1 bit, below every option's bits, so the range check rejects it anyway"),
    Survivor("equivalent", "ex5_11_sensitivity", "plan_precision", r"for up in range\((len\(options\)|now - 1, )",
             "a step to the same or a narrower option saves no KL (drop ≤ 0), so it is never taken; from the first "
             "option, index −1 is the last option, which the original reaches with the same drop per byte"),
    # Scales that cancel, ties, starting values that the first candidate replaces.
    Survivor("equivalent", "ex5_6_gptq", "gptq_quantize_model", r"^H = \((2 \* X\.shape\[0\]|3 / X\.shape\[0\]|"
             r"2 / X\.shape\[1\])\)", "GPTQ is unchanged by a positive factor on H: the updates use ratios of H⁻¹ "
             "entries and the damping is relative to H's mean diagonal"),
    Survivor("equivalent", "ex5_6_gptq", "gptq_quantize_model",
             r"^symmetric=symmetric, damp=damp, act_order=act_order\)|block_size: int = 129\)",
             "block_size only regroups the same updates (the lazy-batch property the tests check)"),
    Survivor("equivalent", "*", "*", r"zip\(.*(strict=None|strict=False|, )\):$",
             "the lengths always match here: strict only guards a mismatch that cannot happen"),
    Survivor("equivalent", "*", "*", r"(error|loss) <= best\[0\]|better = err <= best_err",
             "only ties differ, and a tie scores the same"),
    Survivor("equivalent", "*", "*", r'best = \(float\("(INF|inf)"\), (0\.0|1\.0), ',
             "the first candidate always beats inf and replaces the starting value"),
    Survivor("equivalent", "ex5_7_smoothquant", "search_alpha", r"\.pow\(2\)\.sum\((None|\+1|-2)\)\.mean\(\)",
             "every variant sums the same squared errors up to a constant factor: the same α wins"),
    Survivor("equivalent", "ex5_5_awq", "search_awq_scale", r"^loss = 1\.0$|/ w\.shape\[1\]$|"
             r"^gram = x\.T @ x (\* x\.shape\[0\]|/ x\.shape\[1\])$",
             "a constant added to, or a constant factor on, every candidate's loss picks the same ratio (the linears "
             "sharing x all have its width)"),
    Survivor("equivalent", "ex5_5_awq", "search_clip", r"xg\) (\* xg\.shape\[1\]|/ xg\.shape\[2\])|"
             r"^best = torch\.ones\(groups\)$",
             "a constant factor on every candidate's error picks the same ratio; a (groups,) start broadcasts to "
             "(out, groups) at the first update"),
    Survivor("equivalent", "ex5_5_awq", "awq_quantize_model", r"max_tokens: int = 4097",
             "4097 // T equals 4096 // T unless T divides 4097 = 17 · 241: no window length the kata uses"),
    Survivor("equivalent", "ex5_4_calibration", "capture_inputs", r"batch_size: int = 9\)",
             "the batch size only changes how many sequences run at once, not what is captured"),
    Survivor("equivalent", "ex5_4_calibration", "capture_inputs", r"if isinstance\(m, nn\.Linear\)\]\[:4\]",
             "the error message lists one more example name"),
    # Error messages: mutmut wraps the whole string in "XX"; the message still names the argument.
    Survivor("equivalent", "*", "*", r'raise ValueError\("XX.* / .*XX"\)|at least one kl, each ≥ 0"\)',
             "the message still names the argument (mutmut wraps the whole string in XX)"),
    # CUDA-only paths (5.10): device placement and split-K, reached by the GPU-marked tests only.
    Survivor("cuda", "ex5_10_int4_kernel", "*", r"device=None|torch\.zeros\(1, n, dtype=torch\.float16, \)|"
             r"torch\.arange\(8, \)|\(M, N, dtype=torch\.float32\)",
             "the device argument matters only off the CPU"),
    Survivor("cuda", "ex5_10_int4_kernel", "quantized_matmul", r"_launch\(|^split = |\(split\) and False",
             "split-K (and the SM count and K that decide it) happens only on a GPU; the CPU interpreter never "
             "splits"),
)
