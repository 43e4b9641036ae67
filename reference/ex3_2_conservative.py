"""3.2 — when to be conservative, decided from measured SQNR (solution). 何时更保守（参考答案）。"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from kata.validate import check_num_bits

MIN_SQNR_DB = 20.0  # noise power at most 1 % of the signal power


def recommend_scheme(sqnr_db: Mapping[int, float], target_bits: int = 4, min_sqnr_db: float = MIN_SQNR_DB,
                     memory_bound: bool = False) -> str:
    """PTQ at target_bits if it meets the bar; else QAT if memory pins the width; else the lowest
    higher width that meets the bar; else keep FP16."""
    check_num_bits(target_bits, name="target_bits")
    if target_bits not in sqnr_db:
        raise ValueError(f"sqnr_db 缺少 target_bits={target_bits} / sqnr_db has no entry for target_bits")
    if sqnr_db[target_bits] >= min_sqnr_db:
        return f"int{target_bits}"
    if memory_bound:
        return f"qat-int{target_bits}"
    for bits in sorted(b for b in sqnr_db if b > target_bits):
        if sqnr_db[bits] >= min_sqnr_db:
            return f"int{bits}"
    return "fp16"


def plan_precision(weights: Mapping[str, torch.Tensor], measure_sqnr: Callable[[torch.Tensor, int], float],
                   target_bits: int = 4, min_sqnr_db: float = MIN_SQNR_DB) -> dict[str, str]:
    """Measure each weight's SQNR from target_bits to 8 bits, then recommend_scheme per weight."""
    check_num_bits(target_bits, name="target_bits")
    plan = {}
    for name, weight in weights.items():
        measured = {bits: measure_sqnr(weight, bits) for bits in range(target_bits, 9)}
        plan[name] = recommend_scheme(measured, target_bits, min_sqnr_db)
    return plan
