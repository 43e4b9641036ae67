"""The exercise registry: one entry per exercise, in the chapter's order, and what every answer may import.

课程表（唯一的练习登记处）：每个练习一项，按章节顺序；以及答案可以导入什么、每个练习不许借用什么。
The plugin, the progress table, `python -m kata hint` / `list`, the grader, the answer scan, the demands test and
README's curriculum table all read this module; nothing else lists the exercises, the learner API or the policy.

An answer's policy has three layers, all checked by kata/harness/scan.py before the answer runs (and, in grading,
by the worker around each call, kata/grade/worker.py):
- ANSWER_MODULES: the only top-level modules an answer may import (no other library's quantizer or kernel);
- LEARNER_API: the kata modules it may import, and of them only the names they define (not what they import);
- each exercise's `own_job`: the symbols that *are* its job (5.1 may not call kata.oracles' group rules), and its
  `how`: the checks of how the result was made (5.10's launch of a Triton kernel of the answer's own file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kata.harness.hints import HINTS

# The kata modules an answer may import (kata/<name>.py): the learner API. 学员 API。
LEARNER_API = ("cpu", "decode", "evaluate", "gguf_export", "llama", "oracles", "report", "sequential", "smollm2",
               "static_decode", "timing", "validate")
# Top-level modules an answer may import; anything else (another library's quantizer or kernel, the interpreter's
# internals, files and processes) is refused. 答案可以导入的顶层模块。
ANSWER_MODULES = frozenset({
    "__future__", "abc", "bisect", "collections", "contextlib", "copy", "dataclasses", "enum", "fractions",
    "functools", "heapq", "itertools", "math", "numbers", "operator", "os", "random", "re", "statistics", "string",
    "struct", "textwrap", "time", "typing", "warnings",
    "numpy", "torch", "triton", "kata",
    "exercises",  # the learner's own other answers (exercises.ex2_1_per_tensor), never their tests
})
# Doors out of any exercise: code loaded or compiled at run time, the dispatcher's raw ops, other processes' files.
BACKDOORS = ("torch.ops", "torch._C", "torch._ops", "torch.library", "torch._library", "torch.utils.cpp_extension",
             "torch.utils._python_dispatch", "torch.overrides", "torch._dynamo", "torch.hub", "torch.load",
             "torch.jit.load", "torch.package", "torch.classes", "numpy.load", "numpy.ctypeslib",
             "operator.attrgetter", "operator.methodcaller")
# Ready quantized matmuls: 5.10's job is to write one.
QUANTIZED_MATMULS = ("torch._weight_int4pack_mm", "torch._weight_int4pack_mm_for_cpu",
                     "torch._weight_int4pack_mm_with_scales_and_zeros", "torch._weight_int8pack_mm", "torch._int_mm",
                     "torch._convert_weight_to_int4pack", "torch._convert_weight_to_int4pack_for_cpu",
                     "torch._dyn_quant_matmul_4bit", "torch._dyn_quant_pack_4bit_weight")

# What each check of how demands, in words (`python -m kata rules`); the stub says it too (tests/demands.py).
HOW_TEXT = {
    "fused_kernel": ("quantized_matmul / KernelLinear 每次都启动你文件里的 @triton.jit 内核读打包的权重，返回它写的"
                     "张量，内核外没有矩阵乘，第二次调用起不分配 ≥ 2·N·K 字节 / each call launches a @triton.jit "
                     "kernel of your file on the packed weights, returns what it wrote, runs no matmul outside it, "
                     "and from the second call allocates nothing of ≥ 2·N·K bytes"),
    "fused_path": ("bf16 的 forward 调用一次 torch 的融合核，输出与融合核在同样操作数上的结果逐位相同 / a bf16 "
                   "forward calls torch's fused kernel once and returns its result on the same operands, "
                   "bit-identical"),
}
HOW_RULES = {"fused_kernel": "@triton.jit", "fused_path": "bit-identical"}  # the words a stub must state


@dataclass(frozen=True)
class Exercise:
    id: str  # short id used on the command line, e.g. "ex2_1"
    module: str  # module name in exercises/ and reference/
    chapter: str  # the chapter item it comes from
    title_zh: str
    title_en: str
    writes: str  # what the learner writes (README's curriculum table), 中文 / English
    own_job: tuple[str, ...] = ()  # dotted symbols (and what is under them) that do this exercise's job
    how: tuple[str, ...] = ()  # checks of how a result was made: keys of HOW_TEXT (kata/harness/watch.py)
    points: int = 10
    heavy: bool = False  # its real-model tests calibrate and evaluate the whole model: graded first
    hint_keys: tuple[tuple[str, int], ...] = field(default=())  # (words in a test's name, the hint it is about)

    @property
    def hints(self) -> tuple[tuple[str, str], ...]:
        return HINTS[self.id]

    def hint_for(self, test_name: str | None) -> tuple[str, str]:
        """The hint for a failing test: the first key its name contains picks one; otherwise the first hint."""
        index = next((i for key, i in self.hint_keys if test_name and key in test_name), 0)
        return self.hints[index]

    @property
    def test_file(self) -> str:
        return f"exercises/test_{self.module}.py"

    @property
    def title(self) -> str:
        return f"{self.title_zh} / {self.title_en}"


ORACLES = ("kata.oracles",)  # round-to-nearest and SQNR: the early exercises' own answers

EXERCISES: tuple[Exercise, ...] = (
    Exercise("ex1_1", "ex1_1_weight_memory", "1.1 · TODO 1", "权重显存计算", "weight memory",
             "`calculate_weight_memory(num_params_b, dtype)`；分组元数据的有效比特 / effective bits with group "
             "metadata",
             hint_keys=(("unknown_dtype", 2), ("group", 1))),
    Exercise("ex1_2", "ex1_2_format_table", "1.2", "7B 模型格式对比表", "7B format table",
             "7B 各格式显存表（数据与 Markdown）/ the 7B table as data and text", own_job=("kata.report",)),
    Exercise("ex2_1", "ex2_1_per_tensor", "2.1 · TODO 2", "逐张量量化与反量化", "per-tensor quantize",
             "`quantize_per_tensor(x, num_bits=8)`, `dequantize_per_tensor(q, scale)`", own_job=ORACLES),
    Exercise("ex2_2", "ex2_2_quant_error", "2.2", "量化误差：MSE、最大误差、SQNR", "quantization error",
             "MSE / 最大误差 / SQNR，8 比特 vs 4 比特 / 8 vs 4 bit", own_job=ORACLES),
    Exercise("ex3_1", "ex3_1_savings_vs_error", "3.1 · TODO 3", "显存节省 vs 误差", "saving vs error",
             "显存节省与实测误差一张表 / saving next to measured error", own_job=ORACLES),
    Exercise("ex3_2", "ex3_2_conservative", "3.2", "何时更保守：INT8、保留 FP16、QAT", "when to be conservative",
             "用实测 SQNR 决定 INT4 / INT8 / FP16 / QAT / decide from measured SQNR", own_job=ORACLES),
    Exercise("ex4_1", "ex4_1_self_check", "4.1", "自测题：用计算回答", "self-check by computation",
             "三道自测题用计算回答 / the three questions answered by computation", own_job=ORACLES),
    Exercise("ex5_1", "ex5_1_granularity", "实践 (a)", "量化粒度、零点与截断", "granularity and clipping",
             "逐张量 / 逐通道 / 分组，对称与非对称（零点），截断（百分位、MSE 搜索）/ granularity, zero points, "
             "clipping", own_job=ORACLES),
    Exercise("ex5_2", "ex5_2_int4_packing", "实践 (a)", "INT4 打包与实测字节", "INT4 packing and real bytes",
             "两个 INT4 一个字节；实测 nbytes；torch 的 CPU INT4 格式 / packing, real bytes, torch's CPU INT4 format",
             own_job=(*ORACLES, "kata.gguf_export", "numpy.packbits")),
    Exercise("ex5_3", "ex5_3_quant_linear", "实践 (a)/(c)", "只量化权重的线性层", "weight-only quantized Linear",
             "W8A16 / W4A16 的 `QuantLinear`、torch 的融合 CPU 核（bf16）、整模型替换 / weight-only Linear, torch's "
             "fused CPU kernels, model-wide swap",
             own_job=("kata.llama.replace_linears", "kata.llama.replace_modules"), how=("fused_path",)),
    Exercise("ex5_4", "ex5_4_calibration", "实践 (b)", "校准：层输入、通道统计、Hessian", "calibration and the Hessian",
             "forward hook 捕获输入、通道统计、流式 Hessian / hooks, channel stats, streaming Hessian",
             own_job=("kata.sequential",)),
    Exercise("ex5_5", "ex5_5_awq", "实践 (b)", "AWQ：激活感知缩放与截断", "AWQ scales and clipping",
             "AWQ：缩放搜索、截断搜索、折叠进 RMSNorm / scale search, clip search, folding", heavy=True),
    Exercise("ex5_6", "ex5_6_gptq", "实践 (b)", "GPTQ：误差反馈的逐列量化", "GPTQ",
             "GPTQ：阻尼、死列、Cholesky、lazy block、分组、act-order；逐块整模型 / GPTQ, layer and model", heavy=True),
    Exercise("ex5_7", "ex5_7_smoothquant", "实践 (c)", "W8A8 与 SmoothQuant", "W8A8 and SmoothQuant",
             "逐 token 动态 INT8 激活、整数矩阵乘（`torch._int_mm` 与逐位精确的模拟）、SmoothQuant 折叠与 α 搜索 / "
             "W8A8 with integer matmuls, SmoothQuant", heavy=True),
    Exercise("ex5_8", "ex5_8_compare_formats", "实践 (c)", "同一模型上比较所有格式", "every format on one model",
             "NF4、FP8 E4M3，同一模型上的格式对比表 / NF4, FP8 and one table of every format on one model"),
    Exercise("ex5_9", "ex5_9_qat", "3.2 · 4.1 Q3", "量化感知训练：STE 与 LSQ", "quantization-aware training",
             "STE、LSQ 可学习步长（梯度对有限差分）、蒸馏式 QAT 循环 / STE, learned step sizes, a distillation QAT "
             "loop"),
    Exercise("ex5_10", "ex5_10_int4_kernel", "实践 (c)", "Triton 融合 INT4 / INT8 内核", "a fused Triton kernel",
             "Triton 融合 W4A16 / W8A16 内核（GEMV 与 tl.dot），CPU 上用 Triton 解释器测试 / a fused Triton "
             "kernel, tested on CPU in Triton's interpreter",
             own_job=QUANTIZED_MATMULS, how=("fused_kernel",),
             hint_keys=(("prepare", 0), ("word", 0), ("leading", 2), ("equals", 3), ("fused", 1))),
    Exercise("ex5_11", "ex5_11_sensitivity", "3.2 · 4.1 Q3", "层敏感度、混合精度与方案选择",
             "sensitivity and mixed precision",
             "逐层 / 逐类敏感度、预算内的贪心混合精度、PTQ / 更宽格式 / 混合精度 / QAT 的判断 / per-layer "
             "sensitivity, a greedy mixed-precision plan, choosing PTQ / wider / mixed / QAT"),
    Exercise("ex5_12", "ex5_12_gguf_formats", "实践 (c)", "GGUF 块格式、MXFP4 与 NVFP4",
             "GGUF block formats, MXFP4, NVFP4",
             "llama.cpp 的 Q8_0 / Q4_0 / Q4_1 与 MXFP4 / NVFP4，与 gguf-py 逐字节一致 / llama.cpp's block formats "
             "and MXFP4 / NVFP4, byte for byte against gguf-py",
             own_job=("gguf", "kata.gguf_export", "kata.smollm2"),
             hint_keys=(("round_half", 0), ("zeros", 1), ("nvfp4", 3), ("mxfp4", 2), ("bytes_are", 1))),
)

BY_ID = {ex.id: ex for ex in EXERCISES}
BY_MODULE = {ex.module: ex for ex in EXERCISES}
ANSWER_FILES = frozenset(f"exercises/{ex.module}.py" for ex in EXERCISES)


def find(name: str) -> Exercise:
    """Look an exercise up by id ("ex2_1") or module name ("ex2_1_per_tensor")."""
    ex = BY_ID.get(name) or BY_MODULE.get(name)
    if ex is None:
        raise KeyError(f"没有这个练习 / no such exercise: {name!r}; 可选 / choose from {sorted(BY_ID)}")
    return ex


def may_not_use(ex: Exercise) -> str:
    """The exercise's own job as README's table shows it."""
    return ", ".join(f"`{symbol}`" for symbol in ex.own_job) or "—"


def curriculum_table() -> str:
    """README's curriculum table, in Markdown (tests/test_readme.py checks README holds exactly this)."""
    lines = ["| 章节 / chapter | 练习 / module | 内容 / what you write | 不能借用 / may not use |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {ex.chapter} | `{ex.module}` | {ex.writes} | {may_not_use(ex)} |" for ex in EXERCISES]
    return "\n".join(lines)
