"""Plain, obviously correct oracles for the tests, and the building blocks later exercises may use.

测试用的参照实现，也是后面练习可以直接调用的积木：5.3 / 5.5 / 5.6 可以用这里的 round-to-nearest（RTN），
也可以用你自己的 5.1——每个练习只按它自己的代码评分。
The tests compare against these; 5.3, 5.5 and 5.6 may call them instead of your own 5.1, so that each
exercise is graded on its own code alone. This is the kata's one round-to-nearest quantizer.

Grids (b bits, per (row, group); group_size=None means one group per row):
    symmetric:   scale = c·max|w| / (2^(b-1) - 1),  zero = 0,  q ∈ [-2^(b-1), 2^(b-1) - 1]
    asymmetric:  lo = min(c·min w, 0), hi = max(c·max w, 0), scale = (hi - lo) / (2^b - 1),
                 zero = round(-lo / scale),  q ∈ [0, 2^b - 1]
    q = clamp(round(w / scale) + zero, qmin, qmax),   ŵ = (q - zero)·scale
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from kata.validate import check_group_size


def quantize_symmetric(x: torch.Tensor, num_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor symmetric (2.1's rule): scale = max|x| / (2^(b-1) - 1), codes clamped to the signed grid."""
    qmax = 2 ** (num_bits - 1) - 1
    scale = torch.tensor(max(x.abs().max().item() / qmax, 1e-8))
    return torch.clamp(torch.round(x / scale), -qmax - 1, qmax), scale


def dequantize_symmetric(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q * scale


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """10·log10(Σx² / Σ(x - x̂)²)."""
    noise = (x.double() - x_hat.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(x.double().pow(2).sum().item() / noise)


def measure_sqnr(x: torch.Tensor, num_bits: int = 8) -> float:
    """SQNR of a per-tensor symmetric round trip."""
    return sqnr_db(x, dequantize_symmetric(*quantize_symmetric(x, num_bits)))


def code_range(num_bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax): [-2^(b-1), 2^(b-1) - 1] if symmetric, [0, 2^b - 1] if not."""
    return (-(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1) if symmetric else (0, 2**num_bits - 1)


def _grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """w (rows, cols) viewed as (rows, groups, group_size), float32."""
    return w.detach().float().reshape(w.shape[0], -1, check_group_size(group_size, w.shape[1]))


def group_qparams(w: torch.Tensor, num_bits: int, group_size: int | None = None, *, symmetric: bool = False,
                  clip_ratio: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Min/max scale (float32) and zero point (int64) per (row, group): both (rows, cols / group_size)."""
    groups = _grouped(w, group_size)
    if symmetric:
        scale = (groups.abs().amax(-1) * clip_ratio / code_range(num_bits, True)[1]).clamp(min=1e-8)
        return scale, torch.zeros_like(scale, dtype=torch.int64)
    lo = (groups.amin(-1) * clip_ratio).clamp(max=0)  # the range always holds 0
    hi = (groups.amax(-1) * clip_ratio).clamp(min=0)
    scale = ((hi - lo) / (2**num_bits - 1)).clamp(min=1e-8)
    return scale, torch.round(-lo / scale).clamp(0, 2**num_bits - 1).long()


def quantize_to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, num_bits: int, *,
                     symmetric: bool = False) -> torch.Tensor:
    """Integer codes (int64, w's shape) for the given scale and zero point (rows, groups)."""
    qmin, qmax = code_range(num_bits, symmetric)
    q = torch.round(_grouped(w, w.shape[1] // scale.shape[1]) / scale[..., None]) + zero[..., None]
    return q.clamp(qmin, qmax).long().reshape(w.shape)


def dequantize_groups(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """ŵ = (q - zero)·scale, float32, q's shape."""
    codes = q.long().reshape(scale.shape[0], scale.shape[1], -1)
    return ((codes - zero[..., None]) * scale[..., None]).reshape(q.shape).float()


def quantize_groups(w: torch.Tensor, num_bits: int, group_size: int | None = None, *, symmetric: bool = False,
                    clip_ratio: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes int64, scale, zero point) of min/max round-to-nearest per (row, group)."""
    scale, zero = group_qparams(w, num_bits, group_size, symmetric=symmetric, clip_ratio=clip_ratio)
    return quantize_to_grid(w, scale, zero, num_bits, symmetric=symmetric), scale, zero


def rtn(w: torch.Tensor, num_bits: int, group_size: int | None = None, *, symmetric: bool = False,
        clip_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Round-to-nearest fake quantization: ŵ on the grid, float32, w's shape."""
    return dequantize_groups(*quantize_groups(w, num_bits, group_size, symmetric=symmetric, clip_ratio=clip_ratio))


@torch.no_grad()
def round_to_nearest(model: nn.Module, num_bits: int, group_size: int | None, *, symmetric: bool = False) -> None:
    """RTN in place: every *_proj weight of the model, no calibration."""
    for name, module in model.named_modules():
        if name.endswith("_proj"):
            module.weight.copy_(rtn(module.weight, num_bits, group_size, symmetric=symmetric))


@torch.no_grad()
def _against_rtn(model: nn.Module, quantize, score, num_bits: int, group_size: int) -> tuple[float, float]:
    """score(·) of `quantize(model)` (in place) and of plain RTN on a copy: (ours, rtn)."""
    rtn_model = copy.deepcopy(model)
    round_to_nearest(rtn_model, num_bits, group_size)
    quantize(model)
    return score(model), score(rtn_model)


def kl_against_rtn(model: nn.Module, quantize, ids: torch.Tensor, baseline: list[torch.Tensor], num_bits: int = 4,
                   group_size: int = 64) -> tuple[float, float]:
    """KL to the baseline log-probabilities on `ids`, after `quantize(model)` and after plain RTN: (ours, rtn)."""
    from kata.evaluate import evaluate

    return _against_rtn(model, quantize, lambda m: evaluate(m, ids, baseline)["kl"], num_bits, group_size)


def logit_error_against_rtn(model: nn.Module, quantize, ids: torch.Tensor, num_bits: int,
                            group_size: int) -> tuple[float, float]:
    """Relative logit error ‖f̂(ids) − f(ids)‖ / ‖f(ids)‖ after `quantize(model)` and after plain RTN: (ours, rtn)."""
    with torch.no_grad():
        expected = model(ids)
    return _against_rtn(model, quantize, lambda m: ((m(ids) - expected).norm() / expected.norm()).item(), num_bits,
                        group_size)


def distinct_per_group(w: torch.Tensor, group_size: int) -> int:
    """The largest number of distinct values in any (row, group) of w: at most 2^b on a b-bit grid."""
    groups = w.detach().reshape(w.shape[0], -1, check_group_size(group_size, w.shape[1]))
    return max(len(torch.unique(groups[r, g])) for r in range(groups.shape[0]) for g in range(groups.shape[1]))
