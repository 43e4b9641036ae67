"""4.1 — the chapter's three self-check questions, answered by computation (solution). 自测题（参考答案）。"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from kata.validate import check_float_tensor, check_positive


def memory_gap(num_params_b: float, memory_gb: Callable[[float, str], float],
               formats: Sequence[str] = ("fp16", "int8", "int4")) -> dict[str, dict[str, float]]:
    """Q1: memory of each format and how many times fp16 is larger: fp16_over = fp16_gb / gb."""
    check_positive(num_params_b, "num_params_b")
    fp16 = memory_gb(num_params_b, "fp16")
    return {fmt: {"memory_gb": memory_gb(num_params_b, fmt), "fp16_over": fp16 / memory_gb(num_params_b, fmt)}
            for fmt in formats}


def crest_factor(x: torch.Tensor) -> float:
    """Peak-to-RMS ratio max|x| / sqrt(mean(x²)): how far the largest value sits above the typical one."""
    check_float_tensor(x, "x", allow_empty=False)
    rms = x.double().pow(2).mean().sqrt().item()
    return x.abs().max().item() / rms if rms > 0 else 1.0


def activation_vs_weight(weight: torch.Tensor, activation: torch.Tensor,
                         measure_sqnr: Callable[[torch.Tensor], float]) -> dict[str, float | bool]:
    """Q2: crest factors and per-tensor SQNRs of both; activations are harder when their SQNR is lower."""
    w_sqnr, a_sqnr = measure_sqnr(weight), measure_sqnr(activation)
    return {"weight_crest": crest_factor(weight), "activation_crest": crest_factor(activation),
            "weight_sqnr_db": w_sqnr, "activation_sqnr_db": a_sqnr, "activation_harder": a_sqnr < w_sqnr}


def ptq_floor(sqnr_db: Mapping[int, float], min_sqnr_db: float = 20.0) -> dict[str, float | int | None]:
    """Q3: the least-squares slope of SQNR against bits (≈ 6.02 dB/bit) and the lowest bit width whose
    PTQ still meets the bar; below it, consider QAT rather than pushing the bit width down."""
    if len(sqnr_db) < 2:
        raise ValueError(f"sqnr_db 至少要两个位宽 / sqnr_db needs at least two bit widths, got {dict(sqnr_db)}")
    bits = torch.tensor(sorted(sqnr_db), dtype=torch.float64)
    db = torch.tensor([sqnr_db[int(b)] for b in bits], dtype=torch.float64)
    slope = ((bits - bits.mean()) * (db - db.mean())).sum() / (bits - bits.mean()).pow(2).sum()
    passing = [int(b) for b in bits if sqnr_db[int(b)] >= min_sqnr_db]
    return {"db_per_bit": slope.item(), "lowest_ptq_bits": min(passing) if passing else None}
