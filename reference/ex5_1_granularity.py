"""Practice (a) — granularity, symmetric vs asymmetric, clipping (solution). 量化粒度与截断（参考答案）。

Scales and zero points have shape (rows, groups): (1, 1) per tensor, (out, 1) per channel,
(out, in / group_size) per group. `_groups` views a weight the same way, so one code path serves all three.
"""

from __future__ import annotations

import torch

from kata.validate import check_choice, check_float_tensor, check_num_bits

GRANULARITIES = ("tensor", "channel", "group")


def _groups(w: torch.Tensor, granularity: str, group_size: int | None) -> torch.Tensor:
    """View w (out, in) as (rows, groups, group_len)."""
    check_float_tensor(w, "w", allow_empty=False)
    check_choice(granularity, GRANULARITIES, "granularity")
    if w.dim() != 2:
        raise ValueError(f"w 必须是二维 (out, in) / w must be 2-D (out, in), got shape {tuple(w.shape)}")
    out_features, in_features = w.shape
    if granularity == "tensor":
        return w.reshape(1, 1, -1)
    if granularity == "channel":
        return w.reshape(out_features, 1, in_features)
    if not isinstance(group_size, int) or group_size <= 0 or in_features % group_size:
        raise ValueError(f"group_size 必须整除每行长度 / group_size must divide the row length {in_features}, "
                         f"got {group_size!r}")
    return w.reshape(out_features, in_features // group_size, group_size)


def _as_groups(t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """View a weight-shaped tensor as (rows, groups, group_len) to match scale (rows, groups)."""
    return t.reshape(scale.shape[0], scale.shape[1], -1)


def choose_qparams(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                   group_size: int | None = None,
                   clip_ratio: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric: scale = c·max|w| / (2^(b-1) - 1), zero_point = 0.
    Asymmetric: lo = min(c·min w, 0), hi = max(c·max w, 0), scale = (hi - lo) / (2^b - 1),
    zero_point = round(-lo / scale). Both per (row, group); c is the clip ratio."""
    check_num_bits(num_bits)
    groups = _groups(w, granularity, group_size).float()
    if symmetric:
        scale = groups.abs().amax(dim=-1) * clip_ratio / (2 ** (num_bits - 1) - 1)
        scale = scale.clamp(min=1e-8)
        return scale, torch.zeros_like(scale, dtype=torch.int32)
    # The range always holds 0, so that 0 is exactly representable and the zero point fits the grid.
    lo = (groups.amin(dim=-1) * clip_ratio).clamp(max=0)
    hi = (groups.amax(dim=-1) * clip_ratio).clamp(min=0)
    scale = ((hi - lo) / (2**num_bits - 1)).clamp(min=1e-8)
    zero_point = torch.round(-lo / scale).clamp(0, 2**num_bits - 1).to(torch.int32)
    return scale, zero_point


def quantize(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int = 4, *,
             symmetric: bool = True) -> torch.Tensor:
    """q = clamp(round(w / scale) + zero_point, qmin, qmax): int8 in [-2^(b-1), 2^(b-1)-1] if symmetric,
    uint8 in [0, 2^b - 1] if not."""
    check_float_tensor(w, "w")
    check_num_bits(num_bits)
    qmin, qmax = (-(2 ** (num_bits - 1)), 2 ** (num_bits - 1) - 1) if symmetric else (0, 2**num_bits - 1)
    q = torch.round(_as_groups(w.float(), scale) / scale[..., None]) + zero_point[..., None]
    q = q.clamp(qmin, qmax).reshape(w.shape)
    return q.to(torch.int8 if symmetric else torch.uint8)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """ŵ = (q - zero_point) · scale, float32, q's shape."""
    codes = _as_groups(q.to(torch.int32), scale) - zero_point[..., None]
    return (codes * scale[..., None]).reshape(q.shape)


def fake_quantize(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                  group_size: int | None = None, clip_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """dequantize(quantize(w)) with parameters from choose_qparams: the weight the model will really use."""
    scale, zero_point = choose_qparams(w, num_bits, symmetric=symmetric, granularity=granularity,
                                       group_size=group_size, clip_ratio=clip_ratio)
    return dequantize(quantize(w, scale, zero_point, num_bits, symmetric=symmetric), scale, zero_point)


def percentile_clip_ratio(w: torch.Tensor, percentile: float = 99.9, *, granularity: str = "channel",
                          group_size: int | None = None) -> torch.Tensor:
    """c = quantile(|w|, percentile / 100) / max|w| per (row, group): ignore the rarest, largest values."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile 必须在 (0, 100] / percentile must be in (0, 100], got {percentile!r}")
    magnitude = _groups(w, granularity, group_size).abs().float()
    peak = magnitude.amax(dim=-1).clamp(min=1e-12)
    return torch.quantile(magnitude, percentile / 100, dim=-1) / peak


def mse_clip_ratio(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                   group_size: int | None = None, grid: int = 20, min_ratio: float = 0.5) -> torch.Tensor:
    """Per (row, group), the shrink factor c in linspace(1, min_ratio, grid) with the least squared error."""
    groups = _groups(w, granularity, group_size).float()
    best_err = torch.full(groups.shape[:2], float("inf"))
    best = torch.ones(groups.shape[:2])
    for ratio in torch.linspace(1.0, min_ratio, grid):
        w_hat = fake_quantize(w, num_bits, symmetric=symmetric, granularity=granularity, group_size=group_size,
                              clip_ratio=float(ratio))
        err = (_groups(w_hat, granularity, group_size) - groups).pow(2).sum(dim=-1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, ratio, best)
    return best
