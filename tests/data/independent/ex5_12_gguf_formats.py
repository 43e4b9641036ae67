"""Independent answer to ex5_12: test data for the similarity check, written without reading reference/."""

from __future__ import annotations

import torch

from kata.validate import check_float_tensor

BLOCKS = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "MXFP4": (32, 17), "NVFP4": (64, 36)}  # (B, bytes)
E2M1_DOUBLED = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)  # 2 × the E2M1 value of each code
E4M3_MAX = 448.0  # FP8 E4M3 最大的有限值 / the largest finite FP8 E4M3 value
E2M1_MAX = 6.0

_FP4_TABLE = torch.tensor(E2M1_DOUBLED, dtype=torch.float32)


# ======================================================================================================== plumbing

def _split_blocks(x: torch.Tensor, fmt: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Validate x and return (its blocks as float32 (n, B), the leading shape)."""
    check_float_tensor(x, "x", allow_empty=False)
    size = BLOCKS[fmt][0]
    if x.ndim == 0 or x.shape[-1] % size:
        raise ValueError(f"x's last dimension must be a multiple of {size} for {fmt}, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float32).reshape(-1, size), tuple(x.shape[:-1])


def _split_records(data: torch.Tensor, fmt: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Validate data and return (its block records (n, bytes per block), the leading shape)."""
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        kind = data.dtype if isinstance(data, torch.Tensor) else type(data).__name__
        raise TypeError(f"data must be a uint8 tensor of {fmt} bytes, got {kind}")
    width = BLOCKS[fmt][1]
    if data.ndim == 0 or data.shape[-1] % width:
        raise ValueError(f"data's last dimension must be a multiple of {width} bytes for {fmt}, "
                         f"got shape {tuple(data.shape)}")
    return data.reshape(-1, width), tuple(data.shape[:-1])


def _as_rows(records: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    return records.reshape(*lead, -1)


def _inverse_or_zero(d: torch.Tensor) -> torch.Tensor:
    inv = torch.reciprocal(d)
    return torch.where(torch.isfinite(inv), inv, torch.zeros_like(inv))


def _half_bytes(v: torch.Tensor) -> torch.Tensor:
    """(n,) float32 → (n, 2) little-endian fp16 bytes."""
    return v.to(torch.float16).reshape(-1, 1).view(torch.uint8)


def _half_value(two_bytes: torch.Tensor) -> torch.Tensor:
    """(n, 2) bytes → (n, 1) float32 read as fp16."""
    return two_bytes.contiguous().view(torch.float16).to(torch.float32)


def _pack(codes: torch.Tensor) -> torch.Tensor:
    """(n, 2h) codes 0..15 → (n, h) bytes: byte j = code j | code j+h << 4."""
    h = codes.shape[-1] // 2
    c = codes.to(torch.uint8)
    return c[:, :h] | (c[:, h:] << 4)


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of _pack: (n, h) bytes → (n, 2h) codes (int64)."""
    return torch.cat([packed & 0x0F, packed >> 4], dim=-1).long()


def _nearest_fp4(target: torch.Tensor, half_scale: torch.Tensor) -> torch.Tensor:
    """For each value of target (n, m), the code whose half_scale (n, 1) · E2M1_DOUBLED is closest; first on ties."""
    grid = half_scale.unsqueeze(-1) * _FP4_TABLE  # (n, 1, 16)
    return torch.argmin((grid - target.unsqueeze(-1)).abs(), dim=-1)


# ============================================================================================ small public helpers

def bits_per_weight(fmt: str) -> float:
    """每个权重的比特数 / bits per weight of a format."""
    if fmt not in BLOCKS:
        raise ValueError(f"fmt must be one of {', '.join(BLOCKS)}, got {fmt!r}")
    values, nbytes = BLOCKS[fmt]
    return nbytes * 8 / values


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """四舍五入、.5 远离 0 / round to nearest, halves away from zero, exactly."""
    mag = v.abs()
    whole = mag.floor()
    bump = (2 * (mag - whole)).floor()
    return torch.copysign(whole + bump, v)


# ====================================================================================================== Q4_1

def quantize_q4_1(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → Q4_1 字节 / bytes."""
    blocks, lead = _split_blocks(x, "Q4_1")
    lo = blocks.amin(dim=1, keepdim=True)
    hi = blocks.amax(dim=1, keepdim=True)
    step = (hi - lo) / 15
    inv = _inverse_or_zero(step)
    codes = torch.trunc((blocks - lo) * inv + 0.5).clamp(0, 15)
    record = torch.cat([_half_bytes(step), _half_bytes(lo), _pack(codes)], dim=1)
    return _as_rows(record, lead)


def dequantize_q4_1(data: torch.Tensor) -> torch.Tensor:
    """Q4_1 字节 → float32."""
    rec, lead = _split_records(data, "Q4_1")
    step, low = _half_value(rec[:, 0:2]), _half_value(rec[:, 2:4])
    return _as_rows(step * _unpack(rec[:, 4:]).float() + low, lead)


# ====================================================================================================== Q4_0

def quantize_q4_0(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → Q4_0 字节 / bytes."""
    blocks, lead = _split_blocks(x, "Q4_0")
    where = blocks.abs().argmax(dim=1, keepdim=True)  # first of equals
    extreme = blocks.gather(1, where)
    step = extreme / -8
    inv = _inverse_or_zero(step)
    codes = torch.trunc(blocks * inv + 8.5).clamp(0, 15)
    # A scale too small to invert (but not 0) is what gguf-py stores as codes 0, not the mid code 8: d is ±0 in
    # fp16 anyway, so the block still reads back as zeros.
    underflow = (step != 0) & (inv == 0)
    codes = torch.where(underflow, torch.zeros_like(codes), codes)
    return _as_rows(torch.cat([_half_bytes(step), _pack(codes)], dim=1), lead)


def dequantize_q4_0(data: torch.Tensor) -> torch.Tensor:
    """Q4_0 字节 → float32."""
    rec, lead = _split_records(data, "Q4_0")
    centred = (_unpack(rec[:, 2:]) - 8).float()
    return _as_rows(_half_value(rec[:, :2]) * centred, lead)


# ====================================================================================================== Q8_0

def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → Q8_0 字节 / bytes."""
    blocks, lead = _split_blocks(x, "Q8_0")
    step = blocks.abs().amax(dim=1, keepdim=True) / 127
    q = round_half_away(blocks * _inverse_or_zero(step)).to(torch.int8).view(torch.uint8)
    return _as_rows(torch.cat([_half_bytes(step), q], dim=1), lead)


def dequantize_q8_0(data: torch.Tensor) -> torch.Tensor:
    """Q8_0 字节 → float32."""
    rec, lead = _split_records(data, "Q8_0")
    signed = rec[:, 2:].contiguous().view(torch.int8).float()
    return _as_rows(signed * _half_value(rec[:, :2]), lead)


# ===================================================================================================== MXFP4

def _e8m0_half(e: torch.Tensor) -> torch.Tensor:
    """2^(e − 128) as float32, assembled from bits the way llama.cpp does (e: integer tensor)."""
    e = e.to(torch.int32)
    sub = torch.bitwise_left_shift(torch.full_like(e, 0x00200000), e.clamp(max=1))
    normal = torch.bitwise_left_shift(e - 1, 23)
    return torch.where(e < 2, sub, normal).view(torch.float32)


def quantize_mxfp4(x: torch.Tensor) -> torch.Tensor:
    """x (..., K) → MXFP4 字节 / bytes."""
    blocks, lead = _split_blocks(x, "MXFP4")
    peak = blocks.abs().amax(dim=1, keepdim=True)
    nonzero = peak > 0
    exponent = torch.floor(torch.log2(torch.where(nonzero, peak, torch.ones_like(peak)))) - 2 + 127
    # Below 2^-125 the exponent goes negative; gguf-py's uint8 cast keeps its low byte (−15 → 241), so do the same.
    e = torch.where(nonzero, exponent, torch.zeros_like(exponent)).to(torch.int32).bitwise_and(0xFF).to(torch.uint8)
    codes = _nearest_fp4(blocks, _e8m0_half(e))
    return _as_rows(torch.cat([e, _pack(codes)], dim=1), lead)


def dequantize_mxfp4(data: torch.Tensor) -> torch.Tensor:
    """MXFP4 字节 → float32."""
    rec, lead = _split_records(data, "MXFP4")
    half = _e8m0_half(rec[:, :1])
    return _as_rows(half * _FP4_TABLE[_unpack(rec[:, 1:])], lead)


# ===================================================================================================== NVFP4

def _read_ue4m3(raw: torch.Tensor) -> torch.Tensor:
    """Scale bytes → float32; the sign bit is ignored and 0x7F (NaN in E4M3) reads as 0."""
    low7 = raw & 0x7F
    value = low7.contiguous().view(torch.float8_e4m3fn).to(torch.float32)
    return torch.where(low7 == 0x7F, torch.zeros_like(value), value)


def quantize_nvfp4(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """x (..., K) → (NVFP4 字节 / bytes, tensor_scale)."""
    blocks, lead = _split_blocks(x, "NVFP4")
    g = (blocks.abs().amax() / (E2M1_MAX * E4M3_MAX)).to(torch.float32)
    if not g > 0:
        g = torch.tensor(1.0)
    subs = blocks.reshape(-1, 16)  # four sub-blocks per block
    wanted = subs.abs().amax(dim=1, keepdim=True) / (E2M1_MAX * g)
    scale_bytes = wanted.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)  # (4n, 1)
    half = _read_ue4m3(scale_bytes) / 2
    codes = _nearest_fp4(subs / g, half)
    n = blocks.shape[0]
    record = torch.cat([scale_bytes.reshape(n, 4), _pack(codes).reshape(n, 32)], dim=1)
    return _as_rows(record, lead), float(g)


def dequantize_nvfp4(data: torch.Tensor, tensor_scale: float = 1.0) -> torch.Tensor:
    """NVFP4 字节 → float32，乘 tensor_scale / times tensor_scale."""
    rec, lead = _split_records(data, "NVFP4")
    half = (_read_ue4m3(rec[:, :4]) / 2).reshape(-1, 1)  # (4n, 1)
    codes = _unpack(rec[:, 4:].reshape(-1, 8))  # (4n, 16)
    decoded = (half * _FP4_TABLE[codes]).reshape(rec.shape[0], 64)
    return _as_rows(decoded * tensor_scale, lead)
