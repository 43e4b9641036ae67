"""实践 (a)/(c) — 只量化权重的线性层，并替换整个模型 / A weight-only quantized Linear, model-wide.

QuantLinear 代替 nn.Linear：状态里只有整数码和 scale（没有浮点权重）；前向时把权重反量化成 x 的 dtype
再做矩阵乘，激活保持浮点（W8A16 / W4A16）/ holds only integer codes and scales; forward dequantizes the
weight to x's dtype and multiplies, activations stay in floating point.

    W8A16（num_bits=8，忽略 group_size / group_size ignored）: 对称、每输出通道 / symmetric, per channel
        buffers: qweight int8 (out, in), scale float16 (out, 1)
    W4A16（num_bits=4）: 非对称、每组 / asymmetric, per group, two codes per byte (low nibble = even column)
        buffers: qweight uint8 (out, in/2), scale float16 (out, in/g), zero_point uint8 (out, in/g)
    偏置（若有）/ bias if any: buffer "bias" float16 (out,); 没有则 None / else None.
    scale 与 zero_point 的算法同 5.1（非对称范围包含 0）/ computed as in 5.1 (the asymmetric range holds 0).
    先把 scale 转成 fp16 再量化，码才与存下的 scale 对应 / round the scale to fp16 before quantizing.
积木 / building blocks: kata.oracles 有 5.1 的 min/max 规则可直接用 / has 5.1's min/max rule ready:
    scale, zero = group_qparams(w, num_bits, group_size, symmetric=...)     # (out, groups); group_size=None 每行
    q = quantize_to_grid(w, scale, zero, num_bits, symmetric=...)           # int64 码 / codes
    ŵ = dequantize_groups(q, scale, zero)
也可以用你自己的 5.1 / 5.2（打包同 5.2：偶数列在低 4 位）。本练习只按这个文件评分 / or use your own 5.1 / 5.2
(pack as in 5.2, even column in the low nibble); this exercise is graded on this file alone.

quantize_model(model, num_bits, group_size, skip): 就地把名字不含 skip 中任何子串的 nn.Linear 换成
QuantLinear（嵌入层不是 Linear，保持不变；lm_head 默认跳过）/ swaps in place every nn.Linear whose name
contains none of `skip`. 返回 / returns {"bytes_before", "bytes_after", "layers"}, 字节数用
kata.llama.weight_bytes(model) 实测 / bytes measured with kata.llama.weight_bytes.

CPU 快速路径 / the fast CPU path (x 在 CPU 上且是 bf16 / x on the CPU in bf16): forward 调用 fused_forward，
不再构造 ŵ，而由 torch 的融合核直接读整数码 / forward calls fused_forward, which never builds ŵ:
    W8: torch._weight_int8pack_mm(x2d, qweight, scale[:, 0].bfloat16())
    W4: torch._weight_int4pack_mm_for_cpu(x2d, packed, group_size, scales_and_zeros)  # 仅 g ∈ FUSED_GROUP_SIZES
        packed = torch._convert_weight_to_int4pack_for_cpu(codes.int(), 1)      # codes (out, in)，0..15
        scales_and_zeros: (in/g, out, 2) bf16, 连续 / contiguous; [..., 0] = scale, [..., 1] = (8 − zp)·scale (5.2)
    cpu_operands() 只在第一次调用时打包并缓存，之后直接复用 / packs once, on first use, then reuses them;
    缓存属于这一层：load_state_dict 换了码就要清空 / the cache belongs to the layer: clear it if you load new codes.
    其余情况（fp32、GPU）仍走反量化路径 / otherwise dequantize.
    x 可以有任意前导维 / x may have any leading dims: reshape(-1, in) → 核 → reshape 回去 / and back.

坏输入 / bad input: num_bits 不是 4 或 8 → ValueError; 4 比特时 group_size 不整除 in_features → ValueError
（kata.validate.check_group_size 可以帮你查 / can check it for you）.

评分也看“怎么做的” / graded on how, too: bf16 的 forward 必须调用 torch 的融合核恰好一次，传入的就是你的 x（展平成
行），返回值与融合核在同样的操作数上算出的结果（加上 bias、reshape 回去）逐位相同（bit-identical）/ a bf16 forward calls
torch's fused kernel exactly once on your x (as rows) and returns its result (plus bias, reshaped back),
bit-identical to the kernel run on the same operands.

答案规则 / answer rules (python -m kata rules ex5_3):
    不能用 / may not use: kata.llama.replace_linears, kata.llama.replace_modules
    ——这正是本练习要你自己写的 / that is this exercise's own job.
提示 / hints: python -m kata hint ex5_3
"""

from __future__ import annotations

import torch
from torch import nn

FUSED_GROUP_SIZES = (32, 64, 128, 256)  # torch 的 CPU INT4 核接受的组大小 / group sizes torch's CPU INT4 kernel takes


class QuantLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, num_bits: int = 4, group_size: int | None = 64,
                 bias: bool = False) -> None:
        """注册上面列出的 buffer（全零）/ Register the buffers listed above (zeros)."""
        super().__init__()
        raise NotImplementedError("5.3: QuantLinear.__init__ — 提示 / hint: python -m kata hint ex5_3")

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_bits: int = 4, group_size: int | None = 64) -> QuantLinear:
        """量化一个 nn.Linear，返回一个 QuantLinear / Quantize an nn.Linear into a QuantLinear."""
        raise NotImplementedError("5.3: QuantLinear.from_linear — 提示 / hint: python -m kata hint ex5_3")

    def dequantized_weight(self) -> torch.Tensor:
        """ŵ (out, in)，float32."""
        raise NotImplementedError("5.3: QuantLinear.dequantized_weight — 提示 / hint: python -m kata hint ex5_3")

    def cpu_operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """融合核的 (权重, scales) 操作数，首次调用时构造并缓存 / the fused kernel's operands, built once."""
        raise NotImplementedError("5.3: QuantLinear.cpu_operands — 提示 / hint: python -m kata hint ex5_3")

    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """用 torch 的 CPU 融合核算 y = x · ŵᵀ + b / y through torch's fused CPU kernel (x bf16)."""
        raise NotImplementedError("5.3: QuantLinear.fused_forward — 提示 / hint: python -m kata hint ex5_3")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x · ŵᵀ + b，dtype 同 x；CPU + bf16 走 fused_forward / in x's dtype; CPU bf16 → fused_forward."""
        raise NotImplementedError("5.3: QuantLinear.forward — 提示 / hint: python -m kata hint ex5_3")


def quantize_model(model: nn.Module, num_bits: int = 4, group_size: int | None = 64,
                   skip: tuple[str, ...] = ("lm_head",)) -> dict[str, int]:
    """就地替换并返回实测字节 / Replace in place; return measured bytes (see above)."""
    raise NotImplementedError("5.3: quantize_model — 提示 / hint: python -m kata hint ex5_3")
