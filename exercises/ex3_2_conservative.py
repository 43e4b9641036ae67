"""3.2 — 何时采用更保守的方案 / When to be conservative: INT8, keep FP16, or QAT.

不凭感觉，用实测的 SQNR 做决定 / decide from the measured SQNR, not by feel. 门槛 / the bar:
    MIN_SQNR_DB = 20 dB  ⇔  量化噪声功率 ≤ 信号功率的 1% / noise power ≤ 1 % of the signal power.
规则 / rules, in this order:
    1. sqnr_db[target_bits] ≥ 门槛 → f"int{target_bits}"        训练后量化就够 / plain PTQ is enough
    2. memory_bound（显存只允许 target_bits）→ f"qat-int{target_bits}"   只能靠 QAT / only QAT can help
    3. 比 target_bits 高、且达标的最低位宽 b → f"int{b}"          更保守 / raise the bit width
    4. 都不达标 → "fp16"                                           保留这一层 / keep the layer in FP16
例 / e.g. sqnr_db = {4: 16.0, 8: 41.0}, target_bits=4 → "int8"; with memory_bound=True → "qat-int4".

plan_precision 对每个权重实测 target_bits..8 比特的 SQNR，再逐层套用规则。
plan_precision measures each weight's SQNR at target_bits..8 bits and applies the rules per weight.
坏输入 / bad input: target_bits 不在 2..8，或 sqnr_db 没有 target_bits → ValueError（写明 target_bits）.
在真实模型上，5.11 的 choose_scheme 用逐层 KL 和最好的 PTQ 结果再回答一次（实验报告第 8 节）/ on the real model,
5.11's choose_scheme answers again from per-layer KL and the best PTQ result (lab section 8).

答案规则 / answer rules (python -m kata rules ex3_2):
    不能用 / may not use: kata.oracles
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex3_2
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

MIN_SQNR_DB = 20.0  # 噪声功率 ≤ 信号功率的 1% / noise power at most 1 % of the signal power


def recommend_scheme(sqnr_db: Mapping[int, float], target_bits: int = 4, min_sqnr_db: float = MIN_SQNR_DB,
                     memory_bound: bool = False) -> str:
    """按上面的规则返回 "int{b}" / "qat-int{b}" / "fp16" / Apply the rules above."""
    raise NotImplementedError("3.2: recommend_scheme — 提示 / hint: python -m kata hint ex3_2")


def plan_precision(weights: Mapping[str, torch.Tensor], measure_sqnr: Callable[[torch.Tensor, int], float],
                   target_bits: int = 4, min_sqnr_db: float = MIN_SQNR_DB) -> dict[str, str]:
    """返回 {权重名: 方案} / Returns {name: scheme}; measure_sqnr(weight, bits) gives the SQNR in dB."""
    raise NotImplementedError("3.2: plan_precision — 提示 / hint: python -m kata hint ex3_2")
