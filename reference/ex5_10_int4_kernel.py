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
- M ≤ GEMV_MAX_M: a GEMV. Each thread owns 4 neighbouring outputs, so a row of words is one 128-bit load per thread
  and the sum over K never leaves its registers; nibbles become floats by OR-ing them into 1.0f's mantissa
  (1 + q/16, no integer-to-float instruction); scale and zero point once per group: s·(Σ x·q − z·Σ x).
- larger M: tl.dot on the tensor cores, the word tile read as 8 nibble sub-tiles, each turned into fp16 by the
  0x6400 trick (1024 + q) and multiplied with its columns of x.
Both split K across programs so that small-M problems fill the GPU; the partial sums meet in fp32 atomics and the
last program to arrive writes y (_finish), so one kernel launch does everything.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn

from kata.llama import replace_modules
from kata.timing import graph_time_us

GEMV_MAX_M = 4  # at most this many rows: the GEMV kernel (tl.dot wants tiles of at least 16 rows)


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
def _load_row(ptrs, mask, EVEN_N: tl.constexpr):
    """One row of BLOCK_N values; no mask when N divides into whole blocks (masks cost vectorised loads)."""
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
                 GROUP: tl.constexpr, BITS: tl.constexpr, CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
                 EVEN_N: tl.constexpr, ATOMIC: tl.constexpr):
    """y[m, n-block] (+)= Σ_k x[m, k]·ŵ[k, n] over this program's K_SLICE rows; grid (N / BLOCK_N, M, SPLIT).

    Each thread owns BLOCK_N / (32·num_warps) neighbouring outputs, so one row of words is one 128-bit load per
    thread and the sum over K stays in the thread's registers: no reduction across threads. x[m, k] is one scalar,
    the same for every thread. Inside a group ŵ = (q − z)·s, hence Σ_k x_k·ŵ_k = s·(Σ_k x_k·q_k − z·Σ_k x_k):
    scale and zero point are read once per CHUNK rows, not once per weight."""
    pid_n, m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_n = tl.max_contiguous(tl.multiple_of(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), BLOCK_N), BLOCK_N)
    mask_n = offs_n < N
    x_row = x_ptr + m * stride_x
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(pid_k * K_SLICE, (pid_k + 1) * K_SLICE, CHUNK):
        part = tl.zeros((BLOCK_N,), dtype=tl.float32)
        x_sum = 0.0
        if BITS == 4:
            for j in tl.static_range(CHUNK // 8):  # one word: 8 consecutive k of each of this thread's outputs
                word = _load_row(w_ptr + (k0 // 8 + j) * N + offs_n, mask_n, EVEN_N)
                for i in tl.static_range(8):
                    x_k = tl.load(x_row + k0 + 8 * j + i).to(tl.float32)
                    part += x_k * _one_plus_code_over_16(word, i)
                    x_sum += x_k
            part = 16.0 * (part - x_sum)  # Σ x·(1 + q/16) = Σx + Σ x·q / 16
        else:
            for r in tl.static_range(CHUNK):
                x_k = tl.load(x_row + k0 + r).to(tl.float32)
                part += x_k * _load_row(w_ptr + (k0 + r) * N + offs_n, mask_n, EVEN_N).to(tl.float32)
                x_sum += x_k
        group = k0 // GROUP  # a chunk never straddles two groups
        s = tl.load(s_ptr + group * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + group * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        acc += s * (part - z * x_sum)
    _finish(acc, y_ptr + m * N + offs_n, sums_ptr + m * N + offs_n, mask_n,
            arrivals_ptr + m * tl.num_programs(0) + pid_n, SPLIT, ATOMIC)


@triton.jit
def _dot_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, sums_ptr, arrivals_ptr, M, N, K, K_SLICE, SPLIT, stride_x,
                GROUP: tl.constexpr, BITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr, X_INTERLEAVED: tl.constexpr, ATOMIC: tl.constexpr):
    """A (BLOCK_M, BLOCK_N) tile of y over this program's K_SLICE; grid (N / BLOCK_N, M / BLOCK_M, SPLIT).

    4 bits: a (BLOCK_K/8, BLOCK_N) tile of words is loaded once and read as 8 sub-tiles, sub-tile i holding
    nibble i of every word, i.e. rows k0 + 8·j + i. Each is dequantized to x's dtype and multiplied on the tensor
    cores with the matching columns of x: 8 tl.dot of depth BLOCK_K/8 and no register shuffle. Those columns are
    a stride-8 gather, unless the caller interleaved x once per call (X_INTERLEAVED: column k0 + BLOCK_K/8·i + j of
    the copy holds k0 + 8·j + i) so that each sub-tile's x is one contiguous load.
    8 bits: the codes are already one row per k, one tl.dot of depth BLOCK_K."""
    pid_n, pid_m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    ROWS: tl.constexpr = BLOCK_K // 8 if BITS == 4 else BLOCK_K
    rows = tl.arange(0, ROWS)
    for k0 in range(pid_k * K_SLICE, (pid_k + 1) * K_SLICE, BLOCK_K):
        if BITS == 4:
            k_rows = k0 + 8 * rows  # the first k of each word row
            inside = (k_rows < K)[:, None] & mask_n[None, :]
            words = tl.load(w_ptr + (k0 // 8 + rows)[:, None] * N + offs_n[None, :], mask=inside, other=0)
            groups = (k_rows // GROUP)[:, None] * N + offs_n[None, :]  # a word's 8 k share one group
            s = tl.load(s_ptr + groups, mask=inside, other=0.0)
            z = tl.load(z_ptr + groups, mask=inside, other=0.0)
            z = z + 1024.0  # see below: the codes arrive as 1024 + q
            for i in tl.static_range(8):
                x_cols = k0 + ROWS * i + rows if X_INTERLEAVED else k_rows + i  # the k of nibble i in each row
                x = tl.load(x_ptr + offs_m[:, None] * stride_x + x_cols[None, :],
                            mask=mask_m[:, None] & (k_rows < K)[None, :], other=0.0)
                # 0x6400 is fp16's 1024.0 with an empty mantissa: OR-ing q (0 … 15) into its low bits gives
                # exactly 1024 + q, no integer-to-float conversion (a quarter-rate instruction).
                q = (((words >> (4 * i)) & 0xF) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
                acc += tl.dot(x, ((q - z) * s).to(x.dtype))
        else:
            k_rows = k0 + rows
            q = tl.load(w_ptr + k_rows[:, None] * N + offs_n[None, :], mask=(k_rows < K)[:, None] & mask_n[None, :],
                        other=0)
            x = tl.load(x_ptr + offs_m[:, None] * stride_x + k_rows[None, :],
                        mask=mask_m[:, None] & (k_rows < K)[None, :], other=0.0)
            acc += tl.dot(x, q.to(x.dtype))  # −127 … 127: exact in fp16 and bf16; the scale comes after
    if BITS == 8:
        acc *= tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    tile = offs_m[:, None] * N + offs_n[None, :]
    _finish(acc, y_ptr + tile, sums_ptr + tile, mask_m[:, None] & mask_n[None, :],
            arrivals_ptr + pid_m * tl.num_programs(0) + pid_n, SPLIT, ATOMIC)


@dataclass(frozen=True)
class _Launch:
    """One way to run a problem: which kernel, its grid and its compile-time constants."""

    gemv: bool
    block_n: int
    split: int  # programs sharing each output along K (their sums meet in fp32 atomics)
    chunk: int  # K rows per loop step (GEMV: a CHUNK inside one group; tl.dot: BLOCK_K)
    block_m: int = 1
    num_warps: int = 1

    def grid(self, M: int, N: int) -> tuple[int, int, int]:
        rows = M if self.gemv else triton.cdiv(M, self.block_m)
        return triton.cdiv(N, self.block_n), rows, self.split


def _splits(K: int, chunk: int) -> list[int]:
    """Every split of K into equal slices of whole chunks."""
    steps = triton.cdiv(K, chunk)
    return [s for s in range(1, steps + 1) if steps % s == 0]


def _candidates(M: int, N: int, K: int, group_size: int, num_bits: int, sms: int) -> list[_Launch]:
    """The launches worth trying, best guess first. GEMV up to GEMV_MAX_M rows: 1 warp whose threads each own
    4 int32 words (W4) or 8 int8 codes (W8) of a row, i.e. wide loads. tl.dot above: (16 or 32) × 128 tiles for W4,
    up to 64 × 128 for W8. Then split K until the programs fill every SM many times over — a GEMV of 8192 outputs
    is only 64 programs for an H200's 132 SMs; about 16 per SM for the GEMV and 4 for tl.dot measured best on an
    H200 — and offer the splits on either side too. On the CPU interpreter (sms = 0): a split of 2 where K allows,
    so that the split-K path is tested too."""
    if M <= GEMV_MAX_M:
        chunk = next(c for c in (64, 32, 16, 8) if group_size % c == 0 and K % c == 0)
        block_m, block_n, warps, per_sm = 1, (128 if num_bits == 4 else 256), 1, 16
    else:
        chunk, block_n, warps, per_sm = (128 if num_bits == 4 else 64), 128, 4, 4
        block_m = 16 if M <= 16 else (32 if num_bits == 4 else 64)
    per_split = triton.cdiv(N, block_n) * (M if M <= GEMV_MAX_M else triton.cdiv(M, block_m))
    splits = _splits(K, chunk)
    want = per_sm * sms if sms else 2 * per_split
    best = min(range(len(splits)), key=lambda i: abs(per_split * splits[i] - want))
    neighbours = [i for i in (best - 1, best + 1) if sms and 0 <= i < len(splits)]
    return [_Launch(M <= GEMV_MAX_M, block_n, splits[i], chunk, block_m, warps) for i in (best, *neighbours)]


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
    if launch.gemv:
        _gemv_kernel[launch.grid(M, N)](rows, *common, N, K // launch.split, launch.split, rows.stride(0),
                                        weights.group_size, BITS=weights.num_bits, CHUNK=launch.chunk,
                                        BLOCK_N=launch.block_n, EVEN_N=N % launch.block_n == 0,
                                        ATOMIC=launch.split > 1, num_warps=launch.num_warps)
    else:
        interleave = weights.num_bits == 4 and K % launch.chunk == 0
        if interleave:  # column k0 + BLOCK_K/8·i + j ← k0 + 8·j + i in each block of BLOCK_K (see _dot_kernel)
            rows = rows.view(M, K // launch.chunk, launch.chunk // 8, 8).transpose(2, 3).reshape(M, K)
        k_slice = triton.cdiv(K, launch.split * launch.chunk) * launch.chunk
        _dot_kernel[launch.grid(M, N)](rows, *common, M, N, K, k_slice, launch.split, rows.stride(0),
                                       weights.group_size, BITS=weights.num_bits, BLOCK_M=launch.block_m,
                                       BLOCK_N=launch.block_n, BLOCK_K=launch.chunk, X_INTERLEAVED=interleave,
                                       ATOMIC=launch.split > 1, num_warps=launch.num_warps, num_stages=3)
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
