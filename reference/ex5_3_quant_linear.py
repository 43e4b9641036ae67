"""Practice (a)/(c) — a weight-only quantized Linear and whole-model replacement (solution). 量化线性层（参考答案）。"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kata.llama import weight_bytes
from kata.oracles import dequantize_groups, group_qparams, quantize_to_grid

FUSED_GROUP_SIZES = (32, 64, 128, 256)  # the group sizes torch's CPU INT4 kernel accepts


class QuantLinear(nn.Module):
    """y = x · ŵᵀ + b with ŵ rebuilt from integer codes on the fly; activations stay in floating point.

    W8A16: int8 codes, one fp16 scale per output channel (symmetric).
    W4A16: two codes per uint8, one fp16 scale and one uint8 zero point per group (asymmetric).
    On CPU with bf16 activations, forward runs torch's fused kernels instead (W4: _weight_int4pack_mm_for_cpu,
    W8: _weight_int8pack_mm), which read the codes directly and never build ŵ in memory.
    """

    def __init__(self, in_features: int, out_features: int, num_bits: int = 4, group_size: int | None = 64,
                 bias: bool = False) -> None:
        super().__init__()
        if num_bits not in (4, 8):
            raise ValueError(f"num_bits 只支持 4 或 8 / num_bits must be 4 or 8, got {num_bits!r}")
        if num_bits == 8:
            group_size = None  # per channel
        elif not group_size or in_features % group_size:
            raise ValueError(f"group_size 必须整除 in_features / group_size must divide in_features={in_features}, "
                             f"got {group_size!r}")
        self.in_features, self.out_features = in_features, out_features
        self.num_bits, self.group_size = num_bits, group_size
        groups = 1 if group_size is None else in_features // group_size
        if num_bits == 8:
            self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        else:
            self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
            self.register_buffer("zero_point", torch.zeros(out_features, groups, dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(out_features, groups, dtype=torch.float16))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float16) if bias else None)
        self._cpu_operands: tuple[torch.Tensor, torch.Tensor] | None = None  # packed on first fused call

    @classmethod
    def from_linear(cls, linear: nn.Linear, num_bits: int = 4, group_size: int | None = 64) -> QuantLinear:
        layer = cls(linear.in_features, linear.out_features, num_bits, group_size, bias=linear.bias is not None)
        w, symmetric = linear.weight.detach(), num_bits == 8
        scale, zero_point = group_qparams(w, num_bits, layer.group_size, symmetric=symmetric)
        scale = scale.half().float()  # quantize with the scale exactly as it will be stored
        q = quantize_to_grid(w, scale, zero_point, num_bits, symmetric=symmetric)
        # W4: two unsigned codes per byte, the even column in the low nibble (5.2's layout).
        layer.qweight.copy_(q if num_bits == 8 else q[:, 0::2] | (q[:, 1::2] << 4))
        layer.scale.copy_(scale)
        if num_bits == 4:
            layer.zero_point.copy_(zero_point)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        """ŵ (out, in) in float32."""
        if self.num_bits == 8:
            return dequantize_groups(self.qweight, self.scale.float(), torch.zeros_like(self.scale, dtype=torch.long))
        return dequantize_groups(self._codes(), self.scale.float(), self.zero_point.long())

    def _codes(self) -> torch.Tensor:
        """W4's codes unpacked: (out, in), the even column from the low nibble."""
        return torch.stack((self.qweight & 0xF, self.qweight >> 4), dim=-1).flatten(-2)

    def cpu_operands(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused kernels' operands, built once and kept: W8 (int8 codes, per-channel scales as a bf16
        vector); W4 (torch's packed int4 tiles, scales_and_zeros (groups, out, 2) in bf16)."""
        if self._cpu_operands is None:
            if self.num_bits == 8:
                self._cpu_operands = (self.qweight, self.scale[:, 0].bfloat16())
            else:  # torch's INT4 kernel computes (q − 8)·scale + zero, so zero = (8 − zero_point)·scale (5.2)
                codes = self._codes().int()
                scale = self.scale.float()
                zero = (8 - self.zero_point.float()) * scale
                packed = torch._convert_weight_to_int4pack_for_cpu(codes, 1)
                scales_and_zeros = torch.stack((scale, zero), dim=-1).transpose(0, 1).contiguous()  # kernel needs it
                self._cpu_operands = (packed, scales_and_zeros.bfloat16())
        return self._cpu_operands

    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = x · ŵᵀ + b through torch's CPU kernel, x bf16 (..., in) of any leading shape."""
        rows = x.reshape(-1, self.in_features)
        weight, scales = self.cpu_operands()
        if self.num_bits == 8:
            y = torch._weight_int8pack_mm(rows, weight, scales)
        else:
            y = torch._weight_int4pack_mm_for_cpu(rows, weight, self.group_size, scales)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.num_bits == 8 or self.group_size in FUSED_GROUP_SIZES
        if fused and x.device.type == "cpu" and x.dtype == torch.bfloat16:  # the kernels are fast only in bf16
            return self.fused_forward(x)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight().to(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.num_bits}, group_size={self.group_size}"


def quantize_model(model: nn.Module, num_bits: int = 4, group_size: int | None = 64,
                   skip: tuple[str, ...] = ("lm_head",)) -> dict[str, int]:
    """Swap every nn.Linear whose name contains none of `skip` for a QuantLinear, in place.
    Returns the model's measured bytes before and after and how many layers were replaced."""
    before = weight_bytes(model)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not any(s in name for s in skip)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QuantLinear.from_linear(linear, num_bits, group_size))
    return {"bytes_before": before, "bytes_after": weight_bytes(model), "layers": len(targets)}
