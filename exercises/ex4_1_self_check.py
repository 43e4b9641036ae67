"""4.1 — 自测题：用计算回答 / The chapter's three self-check questions, answered by computation.

问题 1 / Q1  FP16、INT8、INT4 的显存差多少？/ What is the FP16 / INT8 / INT4 memory gap?
    memory_gap: 每个格式的显存，以及 fp16 是它的几倍 / each format's memory and fp16_over = fp16_gb / gb.
    例 / e.g. 7B → {"fp16": {"memory_gb": 14.0, "fp16_over": 1.0}, "int8": {7.0, 2.0}, "int4": {3.5, 4.0}}

问题 2 / Q2  为什么激活通常比权重更难量化？/ Why are activations usually harder to quantize than weights?
    crest_factor(x) = max|x| / sqrt(mean(x²))   峰均比：离群值越突出越大 / grows with outliers
    activation_vs_weight: 两者的峰均比与逐张量 SQNR；激活的 SQNR 更低 → activation_harder = True.
    keys: weight_crest, activation_crest, weight_sqnr_db, activation_sqnr_db, activation_harder.

问题 3 / Q3  什么时候该考虑 QAT，而不是继续压低位宽？/ When to consider QAT instead of fewer bits?
    ptq_floor: 用最小二乘拟合 SQNR 随比特数的斜率（理论约 6.02 dB/比特）, 并找出 PTQ 仍达标(≥ min_sqnr_db)
    的最低位宽；再往下就该考虑 QAT。/ fit SQNR against bits by least squares (≈ 6.02 dB per bit) and find the
    lowest bit width whose PTQ still meets the bar; below it, consider QAT.
    slope = Σ(b - b̄)(s - s̄) / Σ(b - b̄)²;  返回 / returns {"db_per_bit": slope, "lowest_ptq_bits": b or None}
    例 / e.g. {4: 14.0, 6: 26.0, 8: 38.0}, 20 dB → {"db_per_bit": 6.0, "lowest_ptq_bits": 6}

坏输入 / bad input: num_params_b ≤ 0 → ValueError; crest_factor 的 x 为空/非浮点/含 NaN（信息含 "NaN"）→
ValueError/TypeError;
ptq_floor 少于两个位宽 → ValueError（写明 sqnr_db）.
问题 3 在真实模型上的回答：5.11 的 choose_scheme（逐层 KL、目标位宽下最好的 PTQ KL、比特预算）/ Q3 on the real
model: 5.11's choose_scheme, from per-layer KL, the best PTQ KL at the target bits and the bits budget.

答案规则 / answer rules (python -m kata rules ex4_1):
    不能用 / may not use: kata.oracles
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex4_1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch


def memory_gap(num_params_b: float, memory_gb: Callable[[float, str], float],
               formats: Sequence[str] = ("fp16", "int8", "int4")) -> dict[str, dict[str, float]]:
    """问题 1 / Q1 — {fmt: {"memory_gb": ..., "fp16_over": ...}}."""
    raise NotImplementedError("4.1 Q1: memory_gap — 提示 / hint: python -m kata hint ex4_1")


def crest_factor(x: torch.Tensor) -> float:
    """峰均比 / Peak-to-RMS ratio max|x| / sqrt(mean(x²)) (1.0 for an all-zero tensor)."""
    raise NotImplementedError("4.1 Q2: crest_factor — 提示 / hint: python -m kata hint ex4_1")


def activation_vs_weight(weight: torch.Tensor, activation: torch.Tensor,
                         measure_sqnr: Callable[[torch.Tensor], float]) -> dict[str, float | bool]:
    """问题 2 / Q2 — measure_sqnr(t) 给出逐张量量化的 SQNR / gives a per-tensor round trip's SQNR in dB."""
    raise NotImplementedError("4.1 Q2: activation_vs_weight — 提示 / hint: python -m kata hint ex4_1")


def ptq_floor(sqnr_db: Mapping[int, float], min_sqnr_db: float = 20.0) -> dict[str, float | int | None]:
    """问题 3 / Q3 — {"db_per_bit": float, "lowest_ptq_bits": int or None}."""
    raise NotImplementedError("4.1 Q3: ptq_floor — 提示 / hint: python -m kata hint ex4_1")
