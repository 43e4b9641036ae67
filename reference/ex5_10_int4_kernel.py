"""Practice (c) — a fused W4A16 / W8A16 matmul in Triton: read the codes, never the dequantized matrix (solution).

融合内核（参考答案）：直接读整数码，在寄存器里反量化再乘，从不在显存里生成 ŵ。
At small M a matmul is bound by the bytes of the weight it reads: 4-bit codes are a quarter of fp16's, so a
kernel that dequantizes in registers can be up to ≈ 3.9× faster (16 / (4 + 32/128) bits at g128).

Layout after prepare() (K = in_features, N = out_features, G = K / group_size):

    4 bits: qweight int32 (K/8, N)         word[j, n] = code[n, 8j] | code[n, 8j+1] << 4 | … | code[n, 8j+7] << 28
              n → (contiguous)                 so the 8 codes of one word are 8 consecutive k of one output n
            ┌──────────────────────┐ k 0..7       and a row of words is N-contiguous: threads along n read
            │ w00 w01 w02 …  w0,N-1│ k 8..15      neighbouring words (coalesced)
            │ …                    │
            scales fp16 (G, N), zeros fp16 (G, N) (the zero point as a number): ŵ[k, n] = (q − z[g, n])·s[g, n]
    8 bits: qweight int8 (K, N), scales fp16 (1, N), zeros 0: one group spanning all of K (per channel, symmetric)

Two kernels, launch constants chosen per (shape, device) by timing a few candidates (_candidates, _launch):
- M ≤ GEMV_MAX_M: a GEMV. A program reads (ROWS, BLOCK_N) tiles of codes, 16 bytes a thread along n, and keeps
  its partial sums in registers until one reduction at the end; nibbles become floats by OR-ing them into 1.0f's
  mantissa (1 + q/16, no integer-to-float instruction; int8 codes likewise, 1 + (c + 128)/256); scale and zero
  point once per group: s·(Σ x·q − z·Σ x).
- larger M: tl.dot on the tensor cores. A K block divides the group, so x·ŵ = (x·(q − z))·s: the (BLOCK_K,
  BLOCK_N) tile of q − z (each word read once, its 8 nibbles spread to rows 8r … 8r + 7 in registers; fp16 by
  the 0x6400 trick, 1024 + q) goes into one tl.dot of depth BLOCK_K ≥ 16, the scale multiplies its result.
Both split K across programs where N alone leaves SMs idle; the partial sums meet in fp32 atomics and the last
program to arrive writes y (_finish), so one kernel launch does everything.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl
from torch import nn

from kata.llama import replace_modules
from kata.timing import graph_time_us

GEMV_MAX_M = 4  # at most this many rows of x: the GEMV kernel (a tl.dot tile has at least 16 rows of x)


@dataclass
class KernelWeights:
    qweight: torch.Tensor  # int32 (K/8, N) for 4 bits, int8 (K, N) for 8 bits
    scales: torch.Tensor  # float16 (G, N)
    zeros: torch.Tensor  # float16 (G, N): zero points (0 for 8 bits)
    num_bits: int
    group_size: int  # K for 8 bits (one group per output channel)

    @property
    def shape(self) -> tuple[int, int]:
        """(K, N)."""
        k = self.qweight.shape[0] * (8 if self.num_bits == 4 else 1)
        return k, self.qweight.shape[1]


def prepare(qweight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, num_bits: int,
            group_size: int | None) -> KernelWeights:
    """Repack 5.3's buffers once: W4 qweight uint8 (N, K/2) two codes a byte (even k low), scale / zero_point
    (N, G); W8 qweight int8 (N, K), scale (N, 1). Returns the layout above, on qweight's device."""
    if num_bits not in (4, 8):
        raise ValueError(f"num_bits 只支持 4 或 8 / num_bits must be 4 or 8, got {num_bits!r}")
    if num_bits == 8:
        n, k = qweight.shape
        if k % 16:
            raise ValueError(f"in_features 必须是 16 的倍数 / in_features must be a multiple of 16, got {k}")
        return KernelWeights(qweight.t().contiguous(), scale.reshape(1, n).half().contiguous(),
                             torch.zeros(1, n, dtype=torch.float16, device=qweight.device), 8, k)
    n, k = qweight.shape[0], qweight.shape[1] * 2
    if k % 8:
        raise ValueError(f"in_features 必须是 8 的倍数 / in_features must be a multiple of 8, got {k}")
    if not group_size or k % group_size or group_size % 16:
        raise ValueError(f"group_size 必须整除 in_features 且是 16 的倍数 / group_size must divide in_features={k} "
                         f"and be a multiple of 16, got {group_size!r}")
    codes = torch.stack((qweight & 0xF, qweight >> 4), dim=-1).reshape(n, k).long()  # (N, K), 0..15
    nibbles = codes.t().reshape(k // 8, 8, n)  # (K/8, 8, N): the 8 codes of each word
    shifts = 4 * torch.arange(8, device=qweight.device).view(1, 8, 1)
    words = (nibbles << shifts).sum(dim=1)  # 0 … 2³² − 1 in int64; int32 reads the same bits from −2³¹
    words = torch.where(words >= 2**31, words - 2**32, words).int()
    return KernelWeights(words.contiguous(), scale.t().half().contiguous(), zero_point.t().half().contiguous(), 4,
                         group_size)


@triton.jit
def _load_tile(ptrs, mask, EVEN_N: tl.constexpr):
    """A tile of codes, read once and evicted first (a weight is not read again); no mask when N divides into whole
    blocks (masks cost vectorised loads)."""
    if EVEN_N:
        return tl.load(ptrs, eviction_policy="evict_first")
    return tl.load(ptrs, mask=mask, other=0, eviction_policy="evict_first")


@triton.jit
def _one_plus_code_over_16(word, i: tl.constexpr):
    """1 + q/16 as float32 for nibble i of word, with no integer-to-float conversion: 1.0f is 0x3F800000 and its
    mantissa's top 4 bits are bits 19…22, so OR-ing q into them gives exactly 1 + q/16."""
    if 4 * i <= 19:
        bits = ((word << (19 - 4 * i)) & 0x780000) | 0x3F800000
    else:
        bits = ((word >> (4 * i - 19)) & 0x780000) | 0x3F800000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _one_plus_int8_over_256(codes):
    """1 + (c + 128)/256 as float32 for int8 codes c, with no integer-to-float conversion: c + 128 (0 … 255) lands
    in the mantissa's top 8 bits (bits 15…22) of 1.0f, and c·2¹⁵ + 0x3FC00000 puts it there in one multiply-add."""
    return (codes.to(tl.int32) * 32768 + 0x3FC00000).to(tl.float32, bitcast=True)


@triton.jit
def _finish(acc, y_ptrs, sums_ptrs, mask, arrivals_ptr, SPLIT, ATOMIC: tl.constexpr):
    """Write this program's acc. Alone on its outputs: store. Split K: add acc into float32 sums; the program that
    arrives last (a counter per tile) reads the totals where the atomics live (an atomic add of 0), writes them in
    y's dtype and puts 0 back in the sums and the counter. The scratch is zero again after every call: one
    kernel, no zero-fill before it and no cast after it."""
    if ATOMIC:
        tl.atomic_add(sums_ptrs, acc, mask=mask, sem="relaxed")
        tl.debug_barrier()  # every thread's add is issued before the counter moves
        if tl.atomic_add(arrivals_ptr, 1, sem="acq_rel") == SPLIT - 1:
            total = tl.atomic_add(sums_ptrs, tl.zeros_like(acc), mask=mask, sem="acquire")
            tl.store(y_ptrs, tl.where(mask, total, 0.0), mask=mask)  # masked lanes return no value
            tl.store(sums_ptrs, tl.zeros_like(acc), mask=mask)
            tl.atomic_xchg(arrivals_ptr, 0, sem="relaxed")
    else:
        tl.store(y_ptrs, acc, mask=mask)


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, sums_ptr, arrivals_ptr, N, K_SLICE, SPLIT, stride_x,
                 GROUP: tl.constexpr, BITS: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
                 EVEN_N: tl.constexpr, ATOMIC: tl.constexpr):
    """y[m, n-block] (+)= Σ_k x[m, k]·ŵ[k, n] over this program's K_SLICE; grid (N / BLOCK_N, M, SPLIT).

    Each step reads a (ROWS, BLOCK_N) tile of codes — ROWS rows of words (W4: 8 k each) or of int8 codes (W8) —
    spread over the program's threads, 16 bytes a thread along n; every thread keeps its own partial sums in
    registers and the rows meet once, at the end (tl.sum). x[m, k] is the same for every output. A step stays
    inside one group, where ŵ = (q − z)·s, hence Σ_k x_k·ŵ_k = s·(Σ_k x_k·q_k − z·Σ_k x_k): scale and zero
    point once per row of the tile and group, not once per weight."""
    pid_n, m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_n = tl.max_contiguous(tl.multiple_of(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), BLOCK_N), BLOCK_N)
    mask_n = offs_n < N
    rows = tl.arange(0, ROWS)
    STEP: tl.constexpr = 8 * ROWS if BITS == 4 else ROWS  # k per step
    x_row = x_ptr + m * stride_x
    acc = tl.zeros((ROWS, BLOCK_N), dtype=tl.float32)
    x_total = tl.zeros((ROWS, 1), dtype=tl.float32)  # W8: Σ x, for the offset of 1 + (c + 128)/256
    for k0 in range(pid_k * K_SLICE, (pid_k + 1) * K_SLICE, STEP):
        if BITS == 4:
            word = _load_tile(w_ptr + (k0 // 8 + rows)[:, None] * N + offs_n[None, :], mask_n[None, :], EVEN_N)
            part = tl.zeros((ROWS, BLOCK_N), dtype=tl.float32)
            x_sum = tl.zeros((ROWS, 1), dtype=tl.float32)
            for i in tl.static_range(8):  # nibble i of row r is k = k0 + 8r + i
                x_k = tl.load(x_row + k0 + 8 * rows + i).to(tl.float32)[:, None]
                part += x_k * _one_plus_code_over_16(word, i)
                x_sum += x_k
            part = 16.0 * (part - x_sum)  # Σ x·(1 + q/16) = Σx + Σ x·q / 16
            group = k0 // GROUP  # a step never straddles two groups
            s = tl.load(s_ptr + group * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            z = tl.load(z_ptr + group * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            acc += s * (part - z * x_sum)
        else:
            codes = _load_tile(w_ptr + (k0 + rows)[:, None] * N + offs_n[None, :], mask_n[None, :], EVEN_N)
            x_k = tl.load(x_row + k0 + rows).to(tl.float32)[:, None]
            acc += (256.0 * x_k) * _one_plus_int8_over_256(codes)  # 256·x·v = x·c + 384·x
            x_total += x_k
    if BITS == 8:  # Σ x·c = Σ 256·x·v − 384·Σ x, then one scale per output channel
        acc = tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :] * (acc - 384.0 * x_total)
    _finish(tl.sum(acc, axis=0), y_ptr + m * N + offs_n, sums_ptr + m * N + offs_n, mask_n,
            arrivals_ptr + m * tl.num_programs(0) + pid_n, SPLIT, ATOMIC)


@triton.jit
def _dot_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, sums_ptr, arrivals_ptr, M, N, K_SLICE, SPLIT, stride_x,
                GROUP: tl.constexpr, BITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr, ATOMIC: tl.constexpr):
    """A (BLOCK_M, BLOCK_N) tile of y over this program's K_SLICE; grid (N / BLOCK_N, M / BLOCK_M, SPLIT).

    BLOCK_K divides the group (W8: K), so a K block has one scale and one zero point per column and
    x·ŵ = (x·(q − z))·s: the integers q − z, exact in fp16, go through the tensor cores in one tl.dot of depth
    BLOCK_K (≥ 16, NVIDIA's least for 16-bit inputs) and the scale multiplies the block's result. W4: the
    (BLOCK_K/8, BLOCK_N) words are read once and spread in registers to (BLOCK_K/8, 8, BLOCK_N) — nibble i of
    word row r is k = 8r + i — then reshaped to the (BLOCK_K, BLOCK_N) code tile in k order."""
    pid_n, pid_m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.max_contiguous(tl.multiple_of(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), BLOCK_N), BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    word_rows, shifts = tl.arange(0, BLOCK_K // 8), 4 * tl.arange(0, 8)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(pid_k * K_SLICE, (pid_k + 1) * K_SLICE, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_x + k[None, :], mask=mask_m[:, None], other=0.0)
        group = k0 // GROUP
        s = tl.load(s_ptr + group * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        if BITS == 4:
            words = tl.load(w_ptr + (k0 // 8 + word_rows)[:, None] * N + offs_n[None, :], mask=mask_n[None, :],
                            other=0, eviction_policy="evict_first")
            z = tl.load(z_ptr + group * N + offs_n, mask=mask_n, other=0.0)
            z = z + 1024.0  # see below: the codes arrive as 1024 + q
            # 0x6400 is fp16's 1024.0 with an empty mantissa: OR-ing q (0 … 15) into its low bits gives
            # exactly 1024 + q, no integer-to-float conversion (a quarter-rate instruction).
            q = ((words[:, None, :] >> shifts[None, :, None]) & 0xF) | 0x6400  # (BLOCK_K/8, 8, BLOCK_N)
            q = tl.reshape(q, (BLOCK_K, BLOCK_N)).to(tl.int16).to(tl.float16, bitcast=True)
            codes = (q - z.to(tl.float16)[None, :]).to(x.dtype)  # q − z: small integers, exact in fp16 and bf16
        else:
            codes = tl.load(w_ptr + k[:, None] * N + offs_n[None, :], mask=mask_n[None, :], other=0,
                            eviction_policy="evict_first").to(x.dtype)
        acc += tl.dot(x, codes) * s[None, :]
    tile = offs_m[:, None] * N + offs_n[None, :]
    _finish(acc, y_ptr + tile, sums_ptr + tile, mask_m[:, None] & mask_n[None, :],
            arrivals_ptr + pid_m * tl.num_programs(0) + pid_n, SPLIT, ATOMIC)


# Launch shapes, from a sweep on an H100 (tests/benchmarks/sweep.py, 2026-12-06; docs/results/sweep_5_10.md): the
# best few per kernel, which _launch times per problem. GEMV (ROWS, BLOCK_N, warps, programs per SM): a thread reads
# 16 bytes of a code row at a time, 4 int32 words (W4) or 16 int8 codes (W8); small programs want more of them on
# each SM. tl.dot (BLOCK_K, BLOCK_N, warps, stages, programs per SM): BLOCK_M is 16 rows of x (the tensor cores' least)
# up to M = 16, else 64. K is split until about that many programs run on each SM; _candidates offers that split
# and those for half and twice as many.
_GEMV_TILES: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    4: ((8, 1024, 8, 2), (4, 512, 4, 8), (4, 256, 2, 16), (4, 1024, 8, 4)),
    8: ((8, 1024, 2, 4), (8, 2048, 4, 2), (32, 256, 2, 4)),
}
_DOT_TILES: tuple[tuple[int, int, int, int, int], ...] = ((64, 64, 4, 3, 8), (64, 128, 4, 3, 4))


@dataclass(frozen=True)
class _Launch:
    """One way to run a problem: which kernel, its grid and its compile-time constants."""

    gemv: bool
    block_n: int
    split: int  # programs sharing each output along K (their sums meet in fp32 atomics)
    rows: int  # GEMV: code rows per step (W4 rows of words, 8 k each); tl.dot: BLOCK_K
    block_m: int = 1
    num_warps: int = 4
    num_stages: int = 1
    per_sm: int = 4  # programs per SM that K is split towards (_candidates)

    def grid(self, M: int, N: int) -> tuple[int, int, int]:
        rows = M if self.gemv else triton.cdiv(M, self.block_m)
        return triton.cdiv(N, self.block_n), rows, self.split

    def k_step(self, num_bits: int) -> int:
        """K covered by one loop step of one program."""
        return 8 * self.rows if self.gemv and num_bits == 4 else self.rows


def _splits(K: int, step: int) -> list[int]:
    """Every split of K into equal slices of whole steps."""
    steps = K // step
    return [s for s in range(1, steps + 1) if steps % s == 0]


def _tiles(M: int, group_size: int, num_bits: int) -> list[_Launch]:
    """The tile shapes for this problem, split 1, shrunk along K to fit a group (W8: the whole K, its group): a GEMV
    step inside one group, a tl.dot block dividing it, so at least 16 deep (group sizes are multiples of 16)."""
    words_per_group = group_size // 8 if num_bits == 4 else group_size
    if M <= GEMV_MAX_M:
        return [_Launch(True, n, 1, math.gcd(rows, words_per_group), 1, warps, 1, per_sm)
                for rows, n, warps, per_sm in _GEMV_TILES[num_bits]]
    block_m = 16 if M <= 16 else 64
    return [_Launch(False, n, 1, math.gcd(k, group_size), block_m, warps, stages, per_sm)
            for k, n, warps, stages, per_sm in _DOT_TILES]


def _candidates(M: int, N: int, K: int, group_size: int, num_bits: int, sms: int) -> list[_Launch]:
    """The launches worth trying, best guess first: each tile shape that fits, split along K so that about its
    per_sm programs run on each SM (none where N alone fills the GPU), and for half and twice as many. On the
    CPU interpreter (sms = 0): the first tile, split 2 where K allows, so that the split-K path is tested too."""
    options = []
    for tile in _tiles(M, group_size, num_bits):
        per_split = tile.grid(M, N)[0] * tile.grid(M, N)[1]
        splits = _splits(K, tile.k_step(num_bits))
        want = tile.per_sm * sms if sms else 2 * per_split
        nearest = [min(splits, key=lambda s: abs(per_split * s - programs)) for programs in (want, want / 2, 2 * want)]
        options += [replace(tile, split=s) for s in dict.fromkeys(nearest if sms else nearest[:1])]
        if not sms:
            break
    return options


_scratch: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _split_scratch(M: int, N: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 sums (M, N) and int32 arrival counters (one per tile), allocated zeroed once per (M, N, device) and
    left zeroed by every call (see _finish), so a CUDA graph can replay calls that share them."""
    key = (M, N, device)
    if key not in _scratch:
        _scratch[key] = (torch.zeros(M, N, dtype=torch.float32, device=device),
                         torch.zeros(M * triton.cdiv(N, 16), dtype=torch.int32, device=device))
    return _scratch[key]


def _run(launch: _Launch, rows: torch.Tensor, weights: KernelWeights) -> torch.Tensor:
    K, N = weights.shape
    M = rows.shape[0]
    y = torch.empty(M, N, device=rows.device, dtype=rows.dtype)
    sums, arrivals = _split_scratch(M, N, rows.device)
    common = (weights.qweight, weights.scales, weights.zeros, y, sums, arrivals)
    k_slice = K // launch.split
    if launch.gemv:
        _gemv_kernel[launch.grid(M, N)](rows, *common, N, k_slice, launch.split, rows.stride(0),
                                        weights.group_size, BITS=weights.num_bits, ROWS=launch.rows,
                                        BLOCK_N=launch.block_n, EVEN_N=N % launch.block_n == 0,
                                        ATOMIC=launch.split > 1, num_warps=launch.num_warps,
                                        num_stages=launch.num_stages)
    else:
        _dot_kernel[launch.grid(M, N)](rows, *common, M, N, k_slice, launch.split, rows.stride(0),
                                       weights.group_size, BITS=weights.num_bits, BLOCK_M=launch.block_m,
                                       BLOCK_N=launch.block_n, BLOCK_K=launch.rows, ATOMIC=launch.split > 1,
                                       num_warps=launch.num_warps, num_stages=launch.num_stages)
    return y


_tuned: dict[tuple, _Launch] = {}


def _launch(rows: torch.Tensor, weights: KernelWeights) -> _Launch:
    """The launch for this problem on this device, chosen once and cached. On a GPU the candidates are timed as
    the GPU sees them (kata.timing.graph_time_us: a CUDA graph of calls with L2 flushed before each, so a weight
    that fits in L2 cannot flatter a launch); the interpreter takes the first."""
    K, N = weights.shape
    key = (rows.shape[0], N, K, weights.group_size, weights.num_bits, rows.dtype, rows.device)
    if key not in _tuned:
        cuda = rows.device.type == "cuda"
        sms = torch.cuda.get_device_properties(rows.device).multi_processor_count if cuda else 0
        options = _candidates(rows.shape[0], N, K, weights.group_size, weights.num_bits, sms)
        if len(options) > 1 and torch.cuda.is_current_stream_capturing():
            return options[0]  # no timing inside someone else's graph capture: the best guess, not cached
        if len(options) > 1:
            times = [graph_time_us(lambda o=o: _run(o, rows, weights), calls=5, reps=3) for o in options]
            options = [options[times.index(min(times))]]
        _tuned[key] = options[0]
    return _tuned[key]


def quantized_matmul(x: torch.Tensor, weights: KernelWeights) -> torch.Tensor:
    """y = x · ŵᵀ, x (..., K) float16 / bfloat16 → (..., N) in x's dtype, through the fused kernels."""
    K, N = weights.shape
    if x.shape[-1] != K:
        raise ValueError(f"x 的最后一维应为 {K} / x's last dim must be in_features={K}, got {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"x 必须是 float16 或 bfloat16 / x must be float16 or bfloat16, got {x.dtype}")
    rows = x.reshape(-1, K).contiguous()
    if rows.shape[0] == 0:
        raise ValueError(f"x 没有行 / x has no rows, got shape {tuple(x.shape)}")
    return _run(_launch(rows, weights), rows, weights).reshape(*x.shape[:-1], N)


def triton_runs(x: torch.Tensor) -> bool:
    """Whether the fused kernel takes x here: float16 / bfloat16 on CUDA, or on the CPU in Triton's interpreter."""
    interpreted = x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
    return (x.is_cuda or interpreted) and x.dtype in (torch.float16, torch.bfloat16)


class KernelLinear(nn.Module):
    """A 5.3 QuantLinear that runs the fused kernel where Triton runs (triton_runs); anywhere else it calls the
    layer's own forward, the readable dequantize path that stays the oracle."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.weights: KernelWeights | None = None  # prepared on the first call that takes the kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not triton_runs(x):
            warnings.warn(f"5.10: 内核不在这里运行，改走反量化 / the kernel does not run on {x.device.type} "
                          f"{x.dtype}: dequantize path", stacklevel=2)
            return self.layer(x)
        if self.weights is None:
            layer = self.layer
            self.weights = prepare(layer.qweight, layer.scale, getattr(layer, "zero_point", None), layer.num_bits,
                                   layer.group_size)
        y = quantized_matmul(x, self.weights)
        return y if self.layer.bias is None else y + self.layer.bias.to(y.dtype)


def use_kernel(model: nn.Module) -> int:
    """Wrap every 5.3 QuantLinear of model (a module with qweight, scale and num_bits buffers) in a KernelLinear,
    in place, once; returns how many were wrapped."""
    wrapped = {id(m.layer) for m in model.modules() if isinstance(m, KernelLinear)}
    return replace_modules(model, lambda name, m: all(hasattr(m, a) for a in ("qweight", "scale", "num_bits"))
                           and id(m) not in wrapped, KernelLinear)
