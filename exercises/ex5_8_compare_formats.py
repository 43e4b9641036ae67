"""实践 (c) — 同一模型上比较所有格式：NF4、FP8 与一张对比表 / every format on the same model.

再写两种权重格式，然后用一个循环把同一个模型依次变成每种格式并实测 / two more formats, then one loop:
- NF4（QLoRA, 2023）: 16 个值取在 N(0,1) 的分位点上，正态分布的权重会均匀用到每个码；每组一个 absmax，
  ŵ = codebook[q] · absmax / 16 values at quantiles of N(0, 1); one absmax per group.
    nf4_codebook(): Φ⁻¹(p)，p 从 NF4_OFFSET 到 1/2 均匀取 9 个点去掉最后一个（0）→ 8 个正值；
    同样取 8 个点去掉最后一个再取负 → 7 个负值；再加 0；升序；除以最大的 |值| → [-1, 1] 里的 16 个数。
    (torch.distributions.Normal(0, 1).icdf; 用 float64 算，最后转 float32 / compute in float64.)
  NF4Linear: buffers qweight uint8 (out, in/2)（码是 codebook 下标 0..15，偶数列在低 4 位 / indices, even
    column low）, absmax float16 (out, in/g)；先把 absmax 转成 fp16，再用它归一化 w，取最近的 codebook 值。
    forward: F.linear(x, ŵ.to(x.dtype))。codebook 可以放在 persistent=False 的 buffer 里（不进 state_dict）。
- FP8 E4M3 只量化权重 / weight-only: s = max|w_row| / 448（每输出通道，float32 (out, 1)），
  FP8Linear 的 buffer "weight" 是 (w / s).to(torch.float8_e4m3fn)，buffer "scale" 是 s；ŵ = weight.float() · s。
两者都不接受带 bias 的 Linear（ValueError，消息含类名与 "bias"，如 "NF4Linear"、"FP8Linear"）/
both refuse a linear with a bias (ValueError naming the class and "bias").

compare_formats(load_model, formats, ids, speed=None, progress=...): 每个 Format 一行，字典键为 FORMAT_KEYS：
    baseline = kata.evaluate.log_probs(load_model(), ids)   # float32 原模型；已给出 baseline 则直接用 /
                                                            # the float32 model as loaded, unless given
    每个格式 / per format: model = load_model(); fmt.apply(model)（None 则不动 / None: keep）;
    kata.llama.cast_floats(model, fmt.dtype);
    r = kata.evaluate.evaluate(model, ids, baseline) → "ppl", "kl";
    "weight_bytes" = kata.llama.linear_weight_bytes(model)（实测 / measured）; "bits_per_weight" = fmt.bits_per_weight;
    "tokens_per_s" = speed(model)，除非 speed 是 None 或 fmt.no_speed 非空（则 None）; "note" = fmt.no_speed。
    每一步调用 progress(一行文字)，写出格式名和计数 (i/n)，如 "int8 (2/3)"（progress 为 None 则不报）/ each step
    reports a line naming the format with its count (i/n).
坏输入 / bad input: formats 为空或名字重复 → ValueError; formats 里有不是 Format 的项 → TypeError（写明收到的类型，
    如 "str"）; group_size 不整除 in_features → ValueError; FP8Linear / NF4Linear 遇到有 bias 的层 → ValueError（消息含
    "bias" 和类名）. 错误信息写明参数名 / every message names the argument.
    kata.validate.check_group_size 可以帮你查 group_size / can check group_size for you.

答案规则 / answer rules: python -m kata rules ex5_8
提示 / hints: python -m kata hint ex5_8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from kata.llama import cast_floats, linear_weight_bytes

E4M3_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max
NF4_OFFSET = 0.9677083  # QLoRA 的最外侧分位点 / QLoRA's outermost quantile


def nf4_codebook() -> torch.Tensor:
    """16 个 NF4 值，升序 / the 16 NF4 values, ascending, float32."""
    raise NotImplementedError("5.8: nf4_codebook — 提示 / hint: python -m kata hint ex5_8")


class NF4Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, group_size: int = 64) -> None:
        """注册上面列出的 buffer / Register the buffers listed above."""
        super().__init__()
        raise NotImplementedError("5.8: NF4Linear.__init__ — 提示 / hint: python -m kata hint ex5_8")

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 64) -> NF4Linear:
        raise NotImplementedError("5.8: NF4Linear.from_linear — 提示 / hint: python -m kata hint ex5_8")

    def dequantized_weight(self) -> torch.Tensor:
        """ŵ (out, in)，float32."""
        raise NotImplementedError("5.8: NF4Linear.dequantized_weight — 提示 / hint: python -m kata hint ex5_8")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.8: NF4Linear.forward — 提示 / hint: python -m kata hint ex5_8")


class FP8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        """注册 buffer "weight"（float8_e4m3fn）与 "scale"（float32 (out, 1)）/ Register weight and scale."""
        super().__init__()
        raise NotImplementedError("5.8: FP8Linear.__init__ — 提示 / hint: python -m kata hint ex5_8")

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FP8Linear:
        raise NotImplementedError("5.8: FP8Linear.from_linear — 提示 / hint: python -m kata hint ex5_8")

    def dequantized_weight(self) -> torch.Tensor:
        raise NotImplementedError("5.8: FP8Linear.dequantized_weight — 提示 / hint: python -m kata hint ex5_8")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("5.8: FP8Linear.forward — 提示 / hint: python -m kata hint ex5_8")


@dataclass(frozen=True)
class Format:
    """对比表的一行怎么做出来 / how to make one row of the comparison (given, nothing to write)."""

    name: str
    bits_per_weight: float  # 公式（1.1）/ from the formula (1.1)
    apply: Callable[[nn.Module], object] | None = None  # 就地量化；None 不动 / quantize in place; None keeps it
    dtype: torch.dtype = torch.bfloat16  # 其余部分与激活的 dtype / dtype of the rest and of the activations
    no_speed: str = ""  # 为什么不测 CPU 速度（"" 表示要测）/ why no CPU speed ("" = measure it)


FORMAT_KEYS = ("format", "bits_per_weight", "weight_bytes", "ppl", "kl", "tokens_per_s", "note")


def compare_formats(load_model: Callable[[], nn.Module], formats: Sequence[Format], ids: torch.Tensor, *,
                    baseline: list[torch.Tensor] | None = None, speed: Callable[[nn.Module], float] | None = None,
                    progress: Callable[[str], None] | None = None) -> list[dict]:
    """同一模型、每个格式一行 / one row per format on the same model (see above)."""
    raise NotImplementedError("5.8: compare_formats — 提示 / hint: python -m kata hint ex5_8")
