"""A GPU's rule for tl.dot, applied in Triton's CPU interpreter too.

tl.dot 的形状规则：NVIDIA GPU 上 tl.dot 的内维 K 至少 16（16 比特输入；8 比特 32，32 比特 8），CPU 解释器本来什么都收。
学员自测和评分的 worker 在解释器里装上同样的规则，这样在 GPU 上编译不过的内核，在 CPU 上就已经失败，并说明原因。
Triton's CUDA backend refuses a tl.dot whose inner size K is below 16 for 16-bit inputs (32 for 8-bit, 8 for 32-bit);
its CPU interpreter accepts any. The learner's plugin and the grader's worker put the GPU's rule into the
interpreter, so that a kernel a GPU would refuse fails on the CPU already, saying why.
"""

from __future__ import annotations

from typing import Any


def _nvidia_min_dot_size(lhs_type: Any, rhs_type: Any) -> tuple[int, int, int]:
    """NVIDIA's smallest tl.dot (M, N, K) for these operand types, as Triton's CUDA backend states it (K ≥ 16 for
    16-bit inputs, 32 for 8-bit, 8 for 32-bit); a shallower dot fails here with words a learner can act on."""
    bits = lhs_type.scalar.primitive_bitwidth
    least = {8: 32, 32: 8, 64: 4}.get(bits, 16)
    depth = int(getattr(lhs_type.shape[-1], "value", lhs_type.shape[-1]))
    if depth < least:
        raise AssertionError(f"tl.dot 的内维 K 在 NVIDIA GPU 上至少要 {least}（{bits} 比特输入），这里只有 "
                             f"{depth}：GPU 上编译不过，CPU 解释器按同样的规则检查 / tl.dot's inner size K must be at "
                             f"least {least} for {bits}-bit inputs on NVIDIA GPUs, this one is {depth}: a GPU refuses "
                             f"to compile it, so the CPU interpreter refuses it too (python -m kata hint ex5_10)")
    return (1, 1, least)


def nvidia_dot_rule() -> bool:
    """Make Triton's CPU interpreter (which takes any tl.dot) hold tl.dot to the NVIDIA rule, so that an answer a GPU
    would refuse fails on the CPU too; False where this Triton has no interpreter hook for it."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        return False
    functions = getattr(getattr(interpreter, "interpreter_builder", None), "codegen_fns", None)
    if not isinstance(functions, dict) or "min_dot_size" not in functions:
        return False
    functions["min_dot_size"] = _nvidia_min_dot_size
    return True
