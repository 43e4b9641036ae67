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

Two kernels: W4 with M ≤ GEMV_MAX_M uses a GEMV (one program per block of outputs and slice of K, a multiply and a
sum over K in registers, split-K partial sums added atomically); larger M, and W8, use tl.dot on the tensor cores.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn

from kata.llama import replace_modules

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
def _codes(w_ptr, k0, offs_n, mask_n, N, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BITS: tl.constexpr):
    """The codes of rows k0 … k0 + BLOCK_K − 1, columns offs_n, as float32 (BLOCK_K, BLOCK_N). For 4 bits each
    int32 word is loaded once and its 8 nibbles unpacked in registers: row 8j + i is nibble i of word j."""
    if BITS == 4:
        offs_j = k0 // 8 + tl.arange(0, BLOCK_K // 8)
        words = tl.load(w_ptr + offs_j[:, None] * N + offs_n[None, :], mask=mask_n[None, :], other=0)
        shifts = 4 * tl.arange(0, 8)
        q = (words[:, None, :] >> shifts[None, :, None]) & 0xF  # (BLOCK_K / 8, 8, BLOCK_N)
        q = tl.reshape(q, (BLOCK_K, BLOCK_N))
    else:
        offs_k = k0 + tl.arange(0, BLOCK_K)
        q = tl.load(w_ptr + offs_k[:, None] * N + offs_n[None, :], mask=mask_n[None, :], other=0)
    return q.to(tl.float32)


@triton.jit
def _group(s_ptr, z_ptr, k0, offs_n, mask_n, N, GROUP):
    """Scale and zero point of the group holding rows k0 … (a K block never straddles two groups)."""
    g = k0 // GROUP
    s = tl.load(s_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    return s, z


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, N, K, GROUP, stride_x,
                 BITS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """y[m, n-block] (+)= Σ_k x[m, k]·ŵ[k, n] over this program's slice of K; grid (N / BLOCK_N, M, SPLIT_K).
    Inside a group ŵ = (q − z)·s, so Σ_k x_k·ŵ_k = s·(Σ_k x_k·q_k − z·Σ_k x_k): the scale waits until the end."""
    pid_n, m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    k_slice = K // SPLIT_K
    for k0 in range(pid_k * k_slice, (pid_k + 1) * k_slice, BLOCK_K):
        x = tl.load(x_ptr + m * stride_x + k0 + tl.arange(0, BLOCK_K)).to(tl.float32)
        q = _codes(w_ptr, k0, offs_n, mask_n, N, BLOCK_K, BLOCK_N, BITS)
        s, z = _group(s_ptr, z_ptr, k0, offs_n, mask_n, N, GROUP)
        acc += s * (tl.sum(x[:, None] * q, axis=0) - z * tl.sum(x))
    if SPLIT_K == 1:
        tl.store(y_ptr + m * N + offs_n, acc, mask=mask_n)
    else:
        tl.atomic_add(y_ptr + m * N + offs_n, acc, mask=mask_n)


@triton.jit
def _dot_kernel(x_ptr, w_ptr, s_ptr, z_ptr, y_ptr, M, N, K, GROUP, stride_x,
                BITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                SPLIT_K: tl.constexpr):
    """A (BLOCK_M, BLOCK_N) tile of y over this program's slice of K; grid (N / BN, M / BM, SPLIT_K). The codes
    (0 … 15 or −127 … 127, exact in fp16 / bf16) go through tl.dot; scale and zero point come after, per group."""
    pid_n, pid_m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_slice = K // SPLIT_K
    for k0 in range(pid_k * k_slice, (pid_k + 1) * k_slice, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_x + offs_k[None, :], mask=mask_m[:, None], other=0.0)
        q = _codes(w_ptr, k0, offs_n, mask_n, N, BLOCK_K, BLOCK_N, BITS)
        s, z = _group(s_ptr, z_ptr, k0, offs_n, mask_n, N, GROUP)
        xq = tl.dot(x, q.to(x.dtype))  # (BLOCK_M, BLOCK_N), float32
        acc += (xq - tl.sum(x.to(tl.float32), axis=1)[:, None] * z[None, :]) * s[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * N + offs_n[None, :]
    if SPLIT_K == 1:
        tl.store(y_ptrs, acc, mask=mask_m[:, None] & mask_n[None, :])
    else:
        tl.atomic_add(y_ptrs, acc, mask=mask_m[:, None] & mask_n[None, :])


@functools.cache
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 0


@functools.cache
def _launch(M: int, N: int, K: int, group_size: int, num_bits: int, sms: int) -> tuple:
    """(kernel, grid, tile constants) for this problem, worked out once per shape: the host must launch fast, or
    a 30 µs kernel waits on Python. Tiles come from a sweep on an H100 (tests/benchmarks/README.md)."""
    block_k = next(b for b in (128, 64, 32, 16) if group_size % b == 0)  # a K block stays inside one group
    if M <= GEMV_MAX_M and num_bits == 4:  # W4 GEMV for a few rows; tl.dot otherwise (W8 tiles need no unpacking)
        kernel, tiles = _gemv_kernel, dict(BLOCK_N=128)
        grid = [triton.cdiv(N, 128), M]
    else:
        block_m, block_n = (16, 128) if M <= 32 else (64, 64)
        kernel, tiles = _dot_kernel, dict(BLOCK_M=block_m, BLOCK_N=block_n)
        grid = [triton.cdiv(N, block_n), triton.cdiv(M, block_m)]
    split = 1  # split K until the programs fill the GPU about twice (the CPU interpreter: no split)
    while sms and grid[0] * grid[1] * split < 2 * sms and (K // block_k) % (split * 2) == 0 and split < 16:
        split *= 2
    return kernel, (*grid, split), dict(BITS=num_bits, BLOCK_K=block_k, SPLIT_K=split, num_warps=4, num_stages=3,
                                        **tiles)


def quantized_matmul(x: torch.Tensor, weights: KernelWeights) -> torch.Tensor:
    """y = x · ŵᵀ, x (..., K) float16 / bfloat16 → (..., N) in x's dtype, through the fused kernels."""
    K, N = weights.shape
    if x.shape[-1] != K:
        raise ValueError(f"x 的最后一维应为 {K} / x's last dim must be in_features={K}, got {tuple(x.shape)}")
    if x.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"x 必须是 float16 或 bfloat16 / x must be float16 or bfloat16, got {x.dtype}")
    rows = x.reshape(-1, K).contiguous()
    M = rows.shape[0]
    kernel, grid, constants = _launch(M, N, K, weights.group_size, weights.num_bits, _sm_count(x.device))
    split = grid[2] > 1  # partial sums from several programs: atomics into a zeroed float32 buffer
    y = (torch.zeros if split else torch.empty)(M, N, device=x.device, dtype=torch.float32)
    args = (M,) if kernel is _dot_kernel else ()
    kernel[grid](rows, weights.qweight, weights.scales, weights.zeros, y, *args, N, K, weights.group_size,
                 rows.stride(0), **constants)
    return y.to(x.dtype).reshape(*x.shape[:-1], N)


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
