"""Lab section 7's formats: one small class per format, registered by being defined (as gguf-py registers its
quant types).

第 7 节的格式登记表：每个格式一个小类——名字、每权重比特、怎样用目标自己的练习模块（ctx.module）构造、
有没有快速 CPU 路径；类一定义就登记进 FORMATS，表格按定义顺序逐行。
Adding a format is one class here and its test (tests/test_format_registry.py). A class builds its format from the
target's exercise modules only, so the table measures the target's code.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kata import cpu
from kata.lab.context import GROUP_SIZE, Context
from kata.llama import Llama, replace_linears

FORMATS: dict[str, type[LabFormat]] = {}  # name → class, in the order the classes are defined: the table's rows
NO_FUSED_KERNEL = "no fused CPU kernel in torch (dequantizes every call) / torch 没有融合 CPU 核"
LLAMA_CPP_KERNEL = "llama.cpp runs these; here they dequantize every call / llama.cpp 有内核，这里每次反量化"
SMOOTHQUANT_STRIDE = 16  # SmoothQuant calibrates on every 16th calibration window: 2 windows, far apart in the text


def smoothquant_windows(ctx: Context) -> torch.Tensor:
    """The calibration windows SmoothQuant searches its α on."""
    return ctx.calib_ids[::SMOOTHQUANT_STRIDE]


@contextlib.contextmanager
def int8_products_for_this_cpu(ctx: Context) -> Iterator[None]:
    """Within: the target's W8A8 layers (5.7) take its exact float32 emulation on a CPU where torch._int_mm is slow
    (kata.cpu: no VNNI or AMX, 78× slower), as 5.7's real-model test does; the same integers either way."""
    smoothquant = ctx.module("ex5_7_smoothquant")
    if cpu.has_fast_int8():
        yield
        return
    runs = smoothquant.int_mm_runs
    smoothquant.int_mm_runs = lambda device, *shape: torch.device(device).type != "cpu" and runs(device, *shape)
    try:
        yield
    finally:
        smoothquant.int_mm_runs = runs


class LabFormat(abc.ABC):
    """One row of section 7, built for one lab run: `ctx` gives the target's exercise modules, `linears` are the
    model's block linears (per-row formats average their bits over the linears' widths). A subclass that sets its
    own `name` registers itself in FORMATS; a family's shared base sets none. `no_speed` says why the format has no
    fast CPU path, so that its decode speed is not measured ("" = measure it)."""

    name: ClassVar[str] = ""
    no_speed: ClassVar[str] = ""
    own_dtype: ClassVar[torch.dtype | None] = None  # a float format's own dtype; else quality runs in this CPU's

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return
        if cls.name in FORMATS:
            raise ValueError(f"格式名重复 / format name defined twice: {cls.name!r}")
        FORMATS[cls.name] = cls

    def __init__(self, ctx: Context, linears: list[nn.Linear]) -> None:
        self.ctx, self.linears = ctx, linears

    @abc.abstractmethod
    def bits_per_weight(self) -> float:
        """Bits per weight from the formula: payload bits + scale and zero-point bits shared per weight."""

    @abc.abstractmethod
    def quantize(self, model: Llama) -> None:
        """Turn `model` into this format in place, with the target's exercise modules."""

    def quality_dtype(self) -> torch.dtype:
        """The float dtype of everything else while perplexity and KL are measured: the format's own, else this
        CPU's (kata.cpu: bf16 where it is in hardware, float32 where bf16 matmuls would be emulated, 57× slower)."""
        return self.own_dtype or cpu.paths().float_dtype

    def target_format(self) -> object:
        """This row as the target's 5.8 `Format`, for its compare_formats."""
        format_class = self.ctx.module("ex5_8_compare_formats").Format
        return format_class(self.name, self.bits_per_weight(), self.quantize, dtype=self.quality_dtype(),
                            no_speed=self.no_speed)

    def per_row_bits(self, dtype: str, scale_bits: int) -> float:
        """1.1's bits per weight with one scale per output row (the row is the group), weighted by the linears'
        sizes: Σ nᵢ · bits(dtype, group = in_featuresᵢ) / Σ nᵢ."""
        bits = self.ctx.module("ex1_1_weight_memory").bits_per_weight
        total = sum(m.weight.numel() for m in self.linears)
        return sum(m.weight.numel() * bits(dtype, group_size=m.in_features, scale_bits=scale_bits)
                   for m in self.linears) / total


class BF16(LabFormat):
    name = "BF16"
    own_dtype = torch.bfloat16

    def bits_per_weight(self) -> float:
        return 16.0

    def quantize(self, model: Llama) -> None:
        """Nothing to do: compare_formats casts the model to the row's dtype, bf16."""


class FP8WeightOnly(LabFormat):
    name = "FP8 E4M3 weight-only"
    no_speed = NO_FUSED_KERNEL

    def bits_per_weight(self) -> float:
        return self.per_row_bits("fp8", 32)

    def quantize(self, model: Llama) -> None:
        replace_linears(model.layers, self.ctx.module("ex5_8_compare_formats").FP8Linear.from_linear)


class W8A16PerChannel(LabFormat):
    name = "W8A16 int8 per channel"

    def bits_per_weight(self) -> float:
        return self.per_row_bits("int8", 16)

    def quantize(self, model: Llama) -> None:
        self.ctx.module("ex5_3_quant_linear").quantize_model(model, 8, None)


class W8A8(LabFormat):
    """int8 weights per row with an fp32 scale, int8 activations per tensor or per token (5.7)."""

    granularity: ClassVar[str] = ""

    def bits_per_weight(self) -> float:
        return self.per_row_bits("int8", 32)


class W8A8Naive(W8A8):
    def quantize(self, model: Llama) -> None:
        self.ctx.module("ex5_7_smoothquant").swap_linears(model.layers, self.granularity)


class W8A8NaivePerTensor(W8A8Naive):
    name = "W8A8 naive, per-tensor"
    granularity = "tensor"


class W8A8NaivePerToken(W8A8Naive):
    name = "W8A8 naive, per-token"
    granularity = "token"


class W8A8SmoothQuant(W8A8):
    def quantize(self, model: Llama) -> None:
        self.ctx.module("ex5_7_smoothquant").smoothquant_model(model, smoothquant_windows(self.ctx), self.granularity)


class W8A8SmoothQuantPerTensor(W8A8SmoothQuant):
    name = "W8A8 SmoothQuant, per-tensor"
    granularity = "tensor"


class W8A8SmoothQuantPerToken(W8A8SmoothQuant):
    name = "W8A8 SmoothQuant, per-token"
    granularity = "token"


class W4A16RTN(LabFormat):
    name = f"W4A16 RTN g{GROUP_SIZE}"

    def bits_per_weight(self) -> float:
        bits = self.ctx.module("ex1_1_weight_memory").bits_per_weight
        return bits("int4", group_size=GROUP_SIZE, zero_point_bits=8)

    def quantize(self, model: Llama) -> None:
        self.ctx.module("ex5_3_quant_linear").quantize_model(model, 4, GROUP_SIZE)


class NF4(LabFormat):
    name = f"NF4 g{GROUP_SIZE}"
    no_speed = NO_FUSED_KERNEL

    def bits_per_weight(self) -> float:
        return self.ctx.module("ex1_1_weight_memory").bits_per_weight("int4", group_size=GROUP_SIZE)

    def quantize(self, model: Llama) -> None:
        nf4_linear = self.ctx.module("ex5_8_compare_formats").NF4Linear
        replace_linears(model.layers, lambda layer: nf4_linear.from_linear(layer, GROUP_SIZE))


class BlockFormatLinear(nn.Module):
    """A linear whose weight is stored as 5.12's block bytes (and NVFP4's tensor scale), dequantized by the
    target's 5.12 on every call: the real bytes of the format, the readable path, no fused kernel."""

    def __init__(self, layer: nn.Linear, q512: ModuleType, fmt: str) -> None:
        super().__init__()
        name = fmt.lower()
        stored = getattr(q512, f"quantize_{name}")(layer.weight.detach().float())
        data, self.tensor_scale = stored if isinstance(stored, tuple) else (stored, None)
        self.register_buffer("data", data)
        self.dequantize = getattr(q512, f"dequantize_{name}")
        self.bias = layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantize(self.data) if self.tensor_scale is None else self.dequantize(self.data, self.tensor_scale)
        return F.linear(x, w.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


class GGUFBlocks(LabFormat):
    """One of 5.12's block formats (llama.cpp's and the microscaling ones), bits per weight from its block size."""

    block: ClassVar[str] = ""
    no_speed = LLAMA_CPP_KERNEL

    def bits_per_weight(self) -> float:
        return self.ctx.module("ex5_12_gguf_formats").bits_per_weight(self.block)

    def quantize(self, model: Llama) -> None:
        q512 = self.ctx.module("ex5_12_gguf_formats")
        replace_linears(model.layers, lambda layer: BlockFormatLinear(layer, q512, self.block))


class Q8_0(GGUFBlocks):
    name = "Q8_0 (GGUF)"
    block = "Q8_0"


class Q4_0(GGUFBlocks):
    name = "Q4_0 (GGUF)"
    block = "Q4_0"


class Q4_1(GGUFBlocks):
    name = "Q4_1 (GGUF)"
    block = "Q4_1"


class MXFP4(GGUFBlocks):
    name = "MXFP4 (GGUF)"
    block = "MXFP4"


class NVFP4(GGUFBlocks):
    name = "NVFP4 (GGUF)"
    block = "NVFP4"
