"""1.1 · TODO 1 — weight memory (solution). 权重显存计算（参考答案）。"""

from __future__ import annotations

from kata.validate import check_choice, check_positive, check_positive_int

BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}


def bits_per_weight(dtype: str, group_size: int | None = None, scale_bits: int = 16,
                    zero_point_bits: int = 0) -> float:
    """bits = bits(dtype) + (scale_bits + zero_point_bits) / group_size; no group → no metadata."""
    check_choice(dtype, BITS, "dtype")
    if group_size is None:
        return float(BITS[dtype])
    check_positive_int(group_size, "group_size")
    return BITS[dtype] + (scale_bits + zero_point_bits) / group_size


def calculate_weight_memory(num_params_b: float, dtype: str, group_size: int | None = None) -> float:
    """GB (10^9 bytes) = num_params_b · 10^9 · bits / 8 / 10^9 = num_params_b · bits / 8."""
    check_positive(num_params_b, "num_params_b")
    return num_params_b * bits_per_weight(dtype, group_size) / 8
