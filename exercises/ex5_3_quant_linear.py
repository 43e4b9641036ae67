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

坏输入 / bad input: num_bits 不是 4 或 8 → ValueError; 4 比特时 group_size 不整除 in_features → ValueError.

提示 / hints: python -m kata hint ex5_3
"""

from __future__ import annotations

import torch
from torch import nn


class QuantLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, num_bits: int = 4, group_size: int | None = 64,
                 bias: bool = False) -> None:
        """注册上面列出的 buffer（全零）/ Register the buffers listed above (zeros)."""
        super().__init__()
        raise NotImplementedError("5.3: QuantLinear.__init__ — 提示 / hint: python -m kata hint ex5_3")

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_bits: int = 4, group_size: int | None = 64) -> QuantLinear:
        """量化一个 nn.Linear / Quantize an nn.Linear."""
        raise NotImplementedError("5.3: QuantLinear.from_linear — 提示 / hint: python -m kata hint ex5_3")

    def dequantized_weight(self) -> torch.Tensor:
        """ŵ (out, in)，float32."""
        raise NotImplementedError("5.3: QuantLinear.dequantized_weight — 提示 / hint: python -m kata hint ex5_3")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x · ŵᵀ + b，dtype 同 x / in x's dtype."""
        raise NotImplementedError("5.3: QuantLinear.forward — 提示 / hint: python -m kata hint ex5_3")


def quantize_model(model: nn.Module, num_bits: int = 4, group_size: int | None = 64,
                   skip: tuple[str, ...] = ("lm_head",)) -> dict[str, int]:
    """就地替换并返回实测字节 / Replace in place; return measured bytes (see above)."""
    raise NotImplementedError("5.3: quantize_model — 提示 / hint: python -m kata hint ex5_3")
