"""Practice (c) — the formats people run: llama.cpp's block formats, MXFP4 and NVFP4, byte for byte (solution).

GGUF 块格式（参考答案）：每种格式把张量沿最后一维切成块，每块存成固定字节数（小端 fp16），与 llama.cpp 和 gguf-py
完全一致。A tensor (rows, K) becomes (rows, K / B · bytes) uint8: its blocks of B values in order, each laid out
as below; arithmetic in float32 in exactly this order, which is what makes the bytes equal gguf-py's.

    Q8_0   B = 32, 34 bytes: d fp16 | q int8 × 32          d = max|x| / 127;  q = round_half_away(x · (1/d))
    Q4_0   B = 32, 18 bytes: d fp16 | 16 bytes of nibbles  d = x★ / −8, x★ the value of largest |x| (sign kept);
                                                             q = min(15, trunc(x · (1/d) + 8.5));  x̂ = (q − 8)·d
    Q4_1   B = 32, 20 bytes: d fp16 | m fp16 | nibbles     d = (max − min) / 15, m = min;
                                                             q = min(15, trunc((x − min) · (1/d) + 0.5));  x̂ = q·d + m
    MXFP4  B = 32, 17 bytes: e (E8M0) | nibbles            e = floor(log2 max|x|) − 2 + 127 (0 for a block of zeros),
                                                             scale 2^(e − 127); each code the nearest E2M1 value
    NVFP4  B = 64, 36 bytes: 4 × UE4M3 | 4 × 8 nibbles     four sub-blocks of 16, each with its own FP8 E4M3 scale
                                                             amax / 6 (in units of one fp32 tensor scale)
    1/d is taken as 0 where it is not finite (d = 0 or tiny: such a block stores zeros). Nibbles: in a block of
    32, byte j holds code j in its low 4 bits and code j + 16 in its high 4 bits; in an NVFP4 sub-block of 16, byte j
    holds codes j and j + 8.

E2M1 (FP4: 1 sign, 2 exponent, 1 mantissa bit) has the values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; code c is sign·8 +
index, so E2M1_DOUBLED[c] / 2 below. Like llama.cpp the code keeps doubled values (an integer table, 0 … 12) and halves
the scale: MXFP4's stored scale is 2^(e − 128), NVFP4's is E4M3(byte) / 2. Ties go to the first code in the table
(the one nearer zero).

Why re-quantizing the real model's weights to Q4_1 gives back (almost) the shipped bytes: its weights are already
m + q·d on a Q4_1 grid, so where a block used the codes 0 and 15, min = m and max = m + 15·d come back exactly.
"""

from __future__ import annotations

import torch

from kata.validate import check_float_tensor

BLOCKS = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "MXFP4": (32, 17), "NVFP4": (64, 36)}  # (B, bytes)
E2M1_DOUBLED = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)  # 2 × the E2M1 value of each code
E4M3_MAX = 448.0  # the largest finite FP8 E4M3 value
E2M1_MAX = 6.0


def bits_per_weight(fmt: str) -> float:
    """8 · bytes per block / values per block: Q8_0 8.5, Q4_0 4.5, Q4_1 5.0, MXFP4 4.25, NVFP4 4.5."""
    if fmt not in BLOCKS:
        raise ValueError(f"fmt 只能是 / fmt must be one of {sorted(BLOCKS)}, got {fmt!r}")
    size, nbytes = BLOCKS[fmt]
    return 8 * nbytes / size


def _blocks(x: torch.Tensor, size: int) -> torch.Tensor:
    """x (..., K) as float32 blocks (n, size), after checking it."""
    check_float_tensor(x, "x", allow_empty=False)
    if x.shape[-1] % size:
        raise ValueError(f"x 的最后一维必须是 {size} 的倍数 / x's last dim must be a multiple of the block size "
                         f"{size}, got {tuple(x.shape)}")
    return x.float().reshape(-1, size)


def _rows(data: torch.Tensor, fmt: str) -> torch.Tensor:
    """data (..., n · bytes) uint8 as blocks (n, bytes), after checking it."""
    nbytes = BLOCKS[fmt][1]
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8:
        raise TypeError(f"data 必须是 uint8 张量 / data must be a uint8 tensor, got "
                        f"{getattr(data, 'dtype', type(data).__name__)}")
    if data.dim() == 0 or data.shape[-1] % nbytes:
        raise ValueError(f"data 的最后一维必须是 {nbytes} 的倍数（{fmt} 每块的字节数）/ data's last dim must be a "
                         f"multiple of {nbytes}, the bytes of a {fmt} block, got {tuple(data.shape)}")
    return data.reshape(-1, nbytes)


def _out(blocks: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Block bytes (n, bytes) back to (..., K / B · bytes), the shape gguf-py gives."""
    return blocks.reshape(*like.shape[:-1], -1)


def _fp16_bytes(v: torch.Tensor) -> torch.Tensor:
    """(n, 1) float32 → (n, 2) uint8: the little-endian bytes of its float16."""
    return v.to(torch.float16).view(torch.uint8)


def _fp16(b: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(torch.float16).float()


def _inverse(d: torch.Tensor) -> torch.Tensor:
    """1/d, or 0 where it is not finite (d = 0, or so small that 1/d overflows: such a block stores zeros)."""
    inverse = 1 / d
    return torch.where(torch.isfinite(inverse), inverse, torch.zeros_like(d))


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round to nearest, halves away from zero, exactly (floor(a + 0.5) can round a + 0.5 up in float32)."""
    a = v.abs()
    whole = torch.floor(a)
    return torch.sign(v) * (whole + torch.floor(2 * (a - whole)))


def _pack_nibbles(codes: torch.Tensor, half: int) -> torch.Tensor:
    """Codes (n, m · 2·half) 0 … 15 → bytes: in each run of 2·half codes, byte j = code j | code j + half << 4."""
    runs = codes.to(torch.uint8).reshape(codes.shape[0], -1, 2, half)
    return (runs[:, :, 0] | (runs[:, :, 1] << 4)).reshape(codes.shape[0], -1)


def _unpack_nibbles(packed: torch.Tensor, half: int) -> torch.Tensor:
    runs = packed.reshape(packed.shape[0], -1, 1, half)
    return torch.cat([runs & 0xF, runs >> 4], dim=2).reshape(packed.shape[0], -1).long()


def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    blocks = _blocks(x, 32)
    d = blocks.abs().amax(-1, keepdim=True) / 127
    q = round_half_away(blocks * _inverse(d)).to(torch.int8)
    return _out(torch.cat([_fp16_bytes(d), q.view(torch.uint8)], -1), x)


def dequantize_q8_0(data: torch.Tensor) -> torch.Tensor:
    rows = _rows(data, "Q8_0")
    return (rows[:, 2:].view(torch.int8).float() * _fp16(rows[:, :2])).reshape(*data.shape[:-1], -1)


def quantize_q4_0(x: torch.Tensor) -> torch.Tensor:
    blocks = _blocks(x, 32)
    extreme = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))  # the largest magnitude, sign kept
    d = extreme / -8  # so that x★ → code 0 and −x★ → code 16, clamped to 15
    q = torch.trunc(blocks * _inverse(d) + 8.5).clamp(0, 15)
    return _out(torch.cat([_fp16_bytes(d), _pack_nibbles(q, 16)], -1), x)


def dequantize_q4_0(data: torch.Tensor) -> torch.Tensor:
    rows = _rows(data, "Q4_0")
    q = _unpack_nibbles(rows[:, 2:], 16)
    return ((q - 8).float() * _fp16(rows[:, :2])).reshape(*data.shape[:-1], -1)


def quantize_q4_1(x: torch.Tensor) -> torch.Tensor:
    blocks = _blocks(x, 32)
    low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
    d = (high - low) / 15
    q = torch.trunc((blocks - low) * _inverse(d) + 0.5).clamp(0, 15)
    return _out(torch.cat([_fp16_bytes(d), _fp16_bytes(low), _pack_nibbles(q, 16)], -1), x)


def dequantize_q4_1(data: torch.Tensor) -> torch.Tensor:
    rows = _rows(data, "Q4_1")
    q = _unpack_nibbles(rows[:, 4:], 16).float()
    return (_fp16(rows[:, :2]) * q + _fp16(rows[:, 2:4])).reshape(*data.shape[:-1], -1)


def _nearest_e2m1(blocks: torch.Tensor, half_scale: torch.Tensor) -> torch.Tensor:
    """For each value the code whose doubled E2M1 value times half_scale is nearest (ties: the first code)."""
    errors = (half_scale[..., None] * torch.tensor(E2M1_DOUBLED, dtype=torch.float32) - blocks[..., None]).abs()
    return errors.argmin(-1)


def _e8m0_half(e: torch.Tensor) -> torch.Tensor:
    """2^(e − 128) in float32, built from its bits as llama.cpp does (below e = 2 a subnormal)."""
    e = e.long()
    bits = torch.where(e < 2, 0x00200000 << e, (e - 1) << 23)
    return bits.to(torch.int32).view(torch.float32)


def quantize_mxfp4(x: torch.Tensor) -> torch.Tensor:
    blocks = _blocks(x, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    e = torch.where(amax > 0, torch.floor(torch.log2(amax)) - 2 + 127, torch.zeros_like(amax))  # 6 · 2^(e−127) ≥ amax
    e = e.clamp(0, 254).to(torch.uint8)
    codes = _nearest_e2m1(blocks, _e8m0_half(e))
    return _out(torch.cat([e, _pack_nibbles(codes, 16)], -1), x)


def dequantize_mxfp4(data: torch.Tensor) -> torch.Tensor:
    rows = _rows(data, "MXFP4")
    codes = _unpack_nibbles(rows[:, 1:], 16)
    values = _e8m0_half(rows[:, :1]) * torch.tensor(E2M1_DOUBLED, dtype=torch.float32)[codes]
    return values.reshape(*data.shape[:-1], -1)


def _ue4m3_half(b: torch.Tensor) -> torch.Tensor:
    """Unsigned E4M3 scale bytes → their value / 2 (the table is doubled): the top bit is unused, 0x7F reads 0."""
    b = (b & 0x7F).contiguous()
    return torch.where(b == 0x7F, 0.0, b.view(torch.float8_e4m3fn).float() / 2)


def quantize_nvfp4(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Returns (data, tensor_scale): tensor_scale = max|x| / (6 · 448) brings every sub-block's scale amax / 6 into
    FP8 E4M3's range; each scale is rounded to E4M3 (torch.float8_e4m3fn, nearest even)."""
    blocks = _blocks(x, 64).reshape(-1, 16)  # sub-blocks of 16
    amax = blocks.abs().amax()
    tensor_scale = (amax / (E2M1_MAX * E4M3_MAX)).item() or 1.0
    scale = (blocks.abs().amax(-1, keepdim=True) / (E2M1_MAX * tensor_scale)).clamp(max=E4M3_MAX)
    fp8 = scale.to(torch.float8_e4m3fn)
    codes = _nearest_e2m1(blocks / tensor_scale, fp8.float() / 2)
    scales = fp8.view(torch.uint8).reshape(-1, 4)  # the four sub-block scales of each block of 64
    data = torch.cat([scales, _pack_nibbles(codes.reshape(-1, 64), 8)], -1)
    return _out(data, x), tensor_scale


def dequantize_nvfp4(data: torch.Tensor, tensor_scale: float = 1.0) -> torch.Tensor:
    rows = _rows(data, "NVFP4")
    scales = _ue4m3_half(rows[:, :4])  # (n, 4)
    codes = _unpack_nibbles(rows[:, 4:], 8).reshape(-1, 4, 16)
    values = scales[..., None] * torch.tensor(E2M1_DOUBLED, dtype=torch.float32)[codes]
    return (values * tensor_scale).reshape(*data.shape[:-1], -1)
