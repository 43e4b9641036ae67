"""Independent answer to ex5_1: test data for the similarity check, written without reading reference/."""

from __future__ import annotations

import torch

from kata.validate import check_choice, check_float_tensor, check_group_size, check_num_bits

GRANULARITIES = ("tensor", "channel", "group")

_MIN_SCALE = 1e-8


# ---------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------

def _require_matrix(w: object) -> None:
    check_float_tensor(w, "w", allow_empty=False)
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-D (out, in) weight, got shape {tuple(w.shape)}")


def _code_limits(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        half = 1 << (bits - 1)
        return -half, half - 1
    return 0, (1 << bits) - 1


def _tiles(w: torch.Tensor, granularity: str, group_size: int | None) -> torch.Tensor:
    """View w as (rows, groups, values per group) for the chosen granularity."""
    check_choice(granularity, GRANULARITIES, "granularity")
    n_out, n_in = w.shape
    if granularity == "tensor":
        return w.reshape(1, 1, n_out * n_in)
    if granularity == "channel":
        return w.reshape(n_out, 1, n_in)
    if group_size is None:
        raise ValueError("group_size is required when granularity='group' (got None)")
    width = check_group_size(group_size, n_in)
    return w.reshape(n_out, n_in // width, width)


def _widen(p: torch.Tensor, cols: int) -> torch.Tensor:
    """Stretch a (rows, groups) parameter over the columns it covers: (rows, cols); rows of 1 broadcast."""
    per = cols // p.shape[1]
    return p.repeat_interleave(per, dim=1) if per > 1 else p


def _params_from_tiles(tiles: torch.Tensor, bits: int, symmetric: bool,
                       clip: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.as_tensor(clip, dtype=torch.float32)
    lo_code, hi_code = _code_limits(bits, symmetric)
    if symmetric:
        peak = c * tiles.abs().amax(dim=-1)
        scale = (peak / hi_code).clamp(min=_MIN_SCALE)
        zero = torch.zeros(scale.shape, dtype=torch.int32)
        return scale.float(), zero
    low = torch.clamp(c * tiles.amin(dim=-1), max=0.0)
    high = torch.clamp(c * tiles.amax(dim=-1), min=0.0)
    scale = ((high - low) / (hi_code - lo_code)).clamp(min=_MIN_SCALE)
    zero = torch.round(-low / scale).to(torch.int32)
    return scale.float(), zero


def _codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    cols = w.shape[1]
    s, z = _widen(scale, cols), _widen(zero, cols)
    lo_code, hi_code = _code_limits(bits, symmetric)
    ints = torch.round(w / s) + z
    return ints.clamp(lo_code, hi_code).to(torch.int8 if symmetric else torch.uint8)


def _roundtrip(w: torch.Tensor, bits: int, symmetric: bool, granularity: str, group_size: int | None,
               clip: float | torch.Tensor) -> torch.Tensor:
    scale, zero = _params_from_tiles(_tiles(w, granularity, group_size), bits, symmetric, clip)
    return dequantize(_codes(w, scale, zero, bits, symmetric), scale, zero)


def _sorted_quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile along the last dim (numpy's default rule), via a sort."""
    ordered, _ = values.sort(dim=-1)
    n = ordered.shape[-1]
    position = q * (n - 1)
    below = int(position // 1)
    above = min(below + 1, n - 1)
    frac = position - below
    a, b = ordered[..., below], ordered[..., above]
    return a + (b - a) * frac


# ---------------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------------

def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """ŵ = (q - zero_point) · scale，float32，与 q 同形 / float32, q's shape."""
    cols = q.shape[1]
    shifted = q.to(torch.float32) - _widen(zero_point, cols).to(torch.float32)
    return shifted * _widen(scale.to(torch.float32), cols)


def quantize(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int = 4, *,
             symmetric: bool = True) -> torch.Tensor:
    """返回与 w 同形的整数码 / Returns codes shaped like w: int8 if symmetric, uint8 if not."""
    _require_matrix(w)
    check_num_bits(num_bits)
    return _codes(w, scale, zero_point, num_bits, symmetric)


def choose_qparams(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                   group_size: int | None = None,
                   clip_ratio: float | torch.Tensor = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """返回 / Returns (scale float32, zero_point int32), both shaped (rows, groups) as above."""
    _require_matrix(w)
    check_num_bits(num_bits)
    return _params_from_tiles(_tiles(w, granularity, group_size), num_bits, symmetric, clip_ratio)


def fake_quantize(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                  group_size: int | None = None, clip_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """choose_qparams → quantize → dequantize：模型实际用到的权重 / the weight the model really uses."""
    _require_matrix(w)
    check_num_bits(num_bits)
    return _roundtrip(w, num_bits, symmetric, granularity, group_size, clip_ratio)


def mse_clip_ratio(w: torch.Tensor, num_bits: int = 4, *, symmetric: bool = True, granularity: str = "channel",
                   group_size: int | None = None, grid: int = 20, min_ratio: float = 0.5) -> torch.Tensor:
    """每个 (行, 组) 误差最小的 c，形状同 scale / the best c per (row, group), shaped like scale."""
    _require_matrix(w)
    check_num_bits(num_bits)
    tiles = _tiles(w, granularity, group_size)
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    if not 0 < min_ratio <= 1:
        raise ValueError(f"min_ratio must be in (0, 1], got {min_ratio!r}")

    best_ratio = torch.ones(tiles.shape[:2], dtype=torch.float32)
    best_error = torch.full(tiles.shape[:2], float("inf"))
    for candidate in torch.linspace(1.0, min_ratio, grid).tolist():
        approx = _roundtrip(w, num_bits, symmetric, granularity, group_size, candidate)
        error = (approx - w).square().reshape(tiles.shape).sum(dim=-1)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_ratio[better] = candidate
    return best_ratio


def percentile_clip_ratio(w: torch.Tensor, percentile: float = 99.9, *, granularity: str = "channel",
                          group_size: int | None = None) -> torch.Tensor:
    """每个 (行, 组) 的 c，形状同 scale / c per (row, group), shaped like scale."""
    _require_matrix(w)
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    magnitudes = _tiles(w, granularity, group_size).abs().float()
    top = magnitudes.amax(dim=-1)
    cut = _sorted_quantile(magnitudes, percentile / 100)
    ratio = cut / torch.where(top > 0, top, torch.ones_like(top))
    return torch.where(top > 0, ratio, torch.ones_like(ratio)).clamp(max=1.0)
