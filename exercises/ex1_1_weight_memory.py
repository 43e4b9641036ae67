"""1.1 · TODO 1 — 权重显存计算 / Weight memory.

一个权重占多少比特，模型就占多少显存：
    GB = 参数量(十亿) × 每个权重的比特数 / 8        (1 GB = 10^9 字节)
例：7B 模型 fp16 → 7 × 16 / 8 = 14.0 GB；int8 → 7.0 GB；int4 → 3.5 GB。

分组量化还要存每组的 scale（和 zero point），摊到每个权重上：
    有效比特 = bits + (scale_bits + zero_point_bits) / group_size
例：int4、每 128 个权重一个 fp16 scale → 4 + 16/128 = 4.125 比特。

How many bits a weight takes decides how much memory the model takes:
    GB = billions of parameters × bits per weight / 8        (1 GB = 10^9 bytes)
e.g. 7B in fp16 → 14.0 GB; int8 → 7.0 GB; int4 → 3.5 GB.
Group-wise quantization also stores a scale (and zero point) per group, spread over its weights:
    effective bits = bits + (scale_bits + zero_point_bits) / group_size   (int4, g128, fp16 scale → 4.125)

坏输入 / bad input: 不认识的 dtype → ValueError（列出合法的名字，如 "int4"）; group_size 不是正整数 →
ValueError; num_params_b ≤ 0 → ValueError. 错误信息写明参数名 / every message names the argument.

答案规则 / answer rules: python -m kata rules ex1_1
提示 / hints: python -m kata hint ex1_1
"""

from __future__ import annotations

# 每种格式每个权重的比特数 / bits per weight of each format (use these names for `dtype`).
BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}


def bits_per_weight(dtype: str, group_size: int | None = None, scale_bits: int = 16,
                    zero_point_bits: int = 0) -> float:
    """每个权重的有效比特数 / Effective bits per weight, metadata included.

    group_size=None 表示没有分组元数据 / no per-group metadata.
    未知 dtype → ValueError（列出合法取值）/ unknown dtype → ValueError listing the valid names;
    group_size 不是正整数 → ValueError / a group_size that is not a positive int → ValueError.

    >>> bits_per_weight("int4", group_size=128)
    4.125
    """
    raise NotImplementedError("TODO 1: bits_per_weight — 提示 / hint: python -m kata hint ex1_1")


def calculate_weight_memory(num_params_b: float, dtype: str, group_size: int | None = None) -> float:
    """权重显存（GB）/ Weight memory in GB (10^9 bytes).

    num_params_b: 参数量，单位十亿 / parameters in billions; 必须为正 / must be positive (ValueError).

    >>> calculate_weight_memory(7, "fp16")
    14.0
    """
    raise NotImplementedError("TODO 1: calculate_weight_memory — 提示 / hint: python -m kata hint ex1_1")
