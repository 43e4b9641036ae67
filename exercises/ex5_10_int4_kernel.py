"""实践 (c) — 用 Triton 写融合的 W4A16 / W8A16 矩阵乘：直接读整数码，不在显存里生成 ŵ / a fused Triton kernel.

M 很小时（逐 token 解码），矩阵乘的耗时由读权重的字节决定：4 比特码只有 fp16 的四分之一，在寄存器里反量化的
内核最多能快 ≈ 3.9×（g128：16 / (4 + 32/128)）/ at small M a matmul is bound by the weight's bytes.

prepare(qweight, scale, zero_point, num_bits, group_size) → KernelWeights：把 5.3 的 buffer 一次性重排 / repack
5.3's buffers once (W4: qweight uint8 (N, K/2)，偶数 k 在低 4 位；scale、zero_point (N, G)。
W8: int8 (N, K)，scale (N, 1)，zero_point 为 None)。scale 和 zero_point 也可能是 float32（或 uint8 的零点），一律转成
fp16 存 / scale and zero_point may arrive as float32 (the zero point also as uint8): store them as fp16：

    4 比特 / bits: qweight int32 (K/8, N)   word[j, n] = code[n, 8j] | code[n, 8j+1] << 4 | … | code[n, 8j+7] << 28
              n → （连续 / contiguous）     一个字里的 8 个码是同一输出 n 的 8 个相邻 k；一行字沿 n 连续，
            ┌──────────────────────┐ k 0..7  相邻线程读相邻的字（合并访存 / coalesced）
            │ w00 w01 w02 …  w0,N-1│ k 8..15
            scales fp16 (G, N), zeros fp16 (G, N)（零点本身 / the zero point）: ŵ[k, n] = (q − z[g, n])·s[g, n]
    8 比特 / bits: qweight int8 (K, N)，scales fp16 (1, N)，zeros 全 0 (1, N)；group_size = K（整行一组）
    (int32 装不下 ≥ 2³¹ 的无符号值：先用 int64 求和，再减 2³² 回绕 / wrap values ≥ 2³¹ by subtracting 2³²)

quantized_matmul(x, weights): x (..., K) float16/bfloat16 → (..., N)，dtype 同 x。两个 @triton.jit 内核：
    M ≤ GEMV_MAX_M: GEMV —— 每个程序算一段输出 n、一段 K：x[k]·ŵ[k, n] 在寄存器里相乘再沿 K 求和；
        在 GPU 上可以 split-K（多个程序分 K，用 tl.atomic_add 累加到 float32 的 y）/ split-K with atomics;
        K 只有一段时（不分 K）也要对 / also right when K is a single chunk (nothing to split)
    M > GEMV_MAX_M: tl.dot —— (BLOCK_M, BLOCK_K) 的 x 乘 (BLOCK_K, BLOCK_N) 的码块，float32 累加 / tl.dot tiles.
    NVIDIA 的规则：tl.dot 的内维 K 至少 16（fp16 / bf16 输入；int8 输入 32），CPU 解释器按同样规则检查 / NVIDIA's
    rule, which the CPU interpreter enforces too: tl.dot's inner size K ≥ 16 for fp16 / bf16 inputs (32 for int8).
    BLOCK_K 取能整除 group_size（W8：K）的 64 / 32 / 16，一个 K 块只有一组：x·ŵ = (x·(q − z))·s / a K block
    divides the group, so the scale can multiply the block's dot. 每个字只读一次，在寄存器里把 8 个码展开成
    (BLOCK_K, BLOCK_N) 的码块再做一个 BLOCK_K 深的 tl.dot；别拆成 8 个 BLOCK_K/8 深的子块（g32 时只有 4 深，GPU
    编译不过）/ read each word once and spread its 8 codes into a (BLOCK_K, BLOCK_N) tile for one tl.dot of depth
    BLOCK_K; 8 sub-tiles of depth BLOCK_K/8 break the rule (4 deep at g32).
    CPU 上用 Triton 解释器跑（TRITON_INTERPRET=1，kata 的 pytest 插件会设置）/ runs in Triton's CPU interpreter.
triton_runs(x): x 是 fp16/bf16，且在 CUDA 上，或在 CPU 上而 TRITON_INTERPRET=1 / where the kernel takes x.
KernelLinear(layer): 包住一个 5.3 QuantLinear（8 比特的层没有 zero_point 属性；bias 可能是 float32，输出仍是 x 的
    dtype / an 8-bit layer has no zero_point attribute; a bias may be float32, the output keeps x's dtype）；
    triton_runs(x) → 第一次调用时 prepare，之后走内核（再加 bias）；
    否则调用 layer 自己的 forward，并先 warnings.warn 一行提示（UserWarning，消息含 "dequantize"）/ wraps a
    QuantLinear: the kernel where Triton runs; elsewhere a one-line UserWarning naming "dequantize", then the layer's
    own forward (Python shows a warning once per place, so a model warns once, not once per layer).
use_kernel(model): 把模型里每个有 qweight、scale、num_bits 的模块包成 KernelLinear（只包一次），返回个数。
部署提速（不是本练习的工作）/ deploying for speed (not this exercise's job): kata.static_decode.pack_projections(model,
    prepare, quantized_matmul) 把 q/k/v、gate/up 各自的 prepare 结果沿 N 拼成一个 KernelWeights，一次启动；所以布局
    必须是上面那样 N 在最后一维 / concatenates your prepared q/k/v (gate/up) along N into one launch: keep N last.

坏输入 / bad input: num_bits 不是 4/8 → ValueError; K 放不进布局（4 比特：不是 8 的倍数；8 比特：不是 16 的倍数）→
    ValueError（消息含 "in_features"，先于 group_size 检查）; group_size 不整除 K 或不是 16 的倍数 → ValueError;
    x 不是 float16/bfloat16 → TypeError; x 的最后一维不等于 in_features → ValueError（消息含 "in_features"）;
    x 没有行（M = 0）→ ValueError（消息含 "rows"）/ x with no rows: ValueError naming "rows".

评分也看“怎么做的” / graded on how, too: 每次调用 quantized_matmul（以及走内核的 KernelLinear）时，评分的服务端
代码检查：你这个文件里定义的 @triton.jit 内核被启动、参数里有打包的权重 weights.qweight；返回的张量就是那次启动写的；
内核之外没有矩阵乘（@、torch.matmul、F.linear …）；从第二次调用起，除输出外不分配 ≥ 2·N·K 字节的张量（torch 或
numpy：反量化出来的 fp16 权重正好这么大）。先反量化再做矩阵乘的答案在内核测试上得零分。自测时插件做同样的检查 /
each call of quantized_matmul (and of KernelLinear where the kernel runs) must launch a @triton.jit kernel defined in
this file with weights.qweight among its arguments and return the tensor that launch wrote; no matmul outside it;
from the second call on nothing of ≥ 2·N·K bytes besides the output. A dequantize-then-matmul answer earns nothing
on the kernel tests; your self-check runs the same checks.

答案规则 / answer rules (python -m kata rules ex5_10):
    不能用 / may not use: torch._weight_int4pack_mm, torch._weight_int4pack_mm_for_cpu,
        torch._weight_int4pack_mm_with_scales_and_zeros, torch._weight_int8pack_mm, torch._int_mm,
        torch._convert_weight_to_int4pack, torch._convert_weight_to_int4pack_for_cpu, torch._dyn_quant_matmul_4bit,
        torch._dyn_quant_pack_4bit_weight
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex5_10
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GEMV_MAX_M = 4  # 不超过这么多行用 GEMV 内核 / at most this many rows: the GEMV kernel


@dataclass
class KernelWeights:
    """prepare() 的结果（已给出）/ what prepare() returns (given)."""

    qweight: torch.Tensor  # int32 (K/8, N) 4 比特 / for 4 bits; int8 (K, N) 8 比特 / for 8 bits
    scales: torch.Tensor  # float16 (G, N)
    zeros: torch.Tensor  # float16 (G, N)
    num_bits: int
    group_size: int  # 8 比特时为 K / K for 8 bits

    @property
    def shape(self) -> tuple[int, int]:
        """(K, N)."""
        k = self.qweight.shape[0] * (8 if self.num_bits == 4 else 1)
        return k, self.qweight.shape[1]


def prepare(qweight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, num_bits: int,
            group_size: int | None) -> KernelWeights:
    """把 5.3 的 buffer 重排成上面的布局 / Repack 5.3's buffers into the layout above."""
    raise NotImplementedError("5.10: prepare — 提示 / hint: python -m kata hint ex5_10")


def quantized_matmul(x: torch.Tensor, weights: KernelWeights) -> torch.Tensor:
    """y = x · ŵᵀ，用你的 Triton 内核 / through your Triton kernels."""
    raise NotImplementedError("5.10: quantized_matmul — 提示 / hint: python -m kata hint ex5_10")


def triton_runs(x: torch.Tensor) -> bool:
    """内核能不能接 x / whether the fused kernel takes x here (CUDA, or the CPU interpreter)."""
    raise NotImplementedError("5.10: triton_runs — 提示 / hint: python -m kata hint ex5_10")


class KernelLinear(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        raise NotImplementedError("5.10: KernelLinear.__init__ — 提示 / hint: python -m kata hint ex5_10")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.10: KernelLinear.forward — 提示 / hint: python -m kata hint ex5_10")


def use_kernel(model: nn.Module) -> int:
    """就地包装并返回个数 / Wrap in place; return how many."""
    raise NotImplementedError("5.10: use_kernel — 提示 / hint: python -m kata hint ex5_10")
