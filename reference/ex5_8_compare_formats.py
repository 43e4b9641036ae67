"""Practice (c) — every format on the same model: NF4, FP8 and one comparison table (solution). 格式对比（参考答案）。

Two more weight formats, then one loop that takes the same model through every format and measures it:
- NF4 (Dettmers et al., "QLoRA", 2023): 16 values placed at quantiles of N(0, 1), so that normally distributed
  weights use every code about equally often; one absmax scale per group, ŵ = codebook[q] · absmax.
- FP8 E4M3 weight-only: ŵ = fp8(w / s) · s with s = max|w_row| / 448 per output channel (448 = E4M3's largest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kata.evaluate import evaluate, log_probs
from kata.llama import cast_floats, linear_weight_bytes

E4M3_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max
NF4_OFFSET = 0.9677083  # QLoRA: the outermost quantile, (1 − 1/(2·15) + 1 − 1/(2·16)) / 2


def nf4_codebook() -> torch.Tensor:
    """The 16 NF4 values, ascending, in [-1, 1] with an exact 0: 8 positive quantiles Φ⁻¹(p) for p evenly
    spaced from NF4_OFFSET down to 1/2 (the last, 0, dropped), 7 negative ones the same way, and 0;
    everything divided by the largest |value|."""
    normal = torch.distributions.Normal(0.0, 1.0)
    positive = normal.icdf(torch.linspace(NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal.icdf(torch.linspace(NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat((negative, torch.zeros(1, dtype=torch.float64), positive)).sort().values
    return (values / values.abs().max()).float()


class NF4Linear(nn.Module):
    """Weight-only NF4: two 4-bit codebook indices per uint8 (even column low), one fp16 absmax per group."""

    def __init__(self, in_features: int, out_features: int, group_size: int = 64) -> None:
        super().__init__()
        if not group_size or in_features % group_size:
            raise ValueError(f"group_size 必须整除 in_features / group_size must divide in_features={in_features}, "
                             f"got {group_size!r}")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("qweight", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
        self.register_buffer("absmax", torch.ones(out_features, in_features // group_size, dtype=torch.float16))
        self.register_buffer("codebook", nf4_codebook(), persistent=False)  # a constant, not state

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 64) -> NF4Linear:
        if linear.bias is not None:
            raise ValueError("NF4Linear 不支持 bias / NF4Linear takes a linear without bias")
        layer = cls(linear.in_features, linear.out_features, group_size)
        w = linear.weight.detach().float().reshape(layer.out_features, -1, group_size)  # (out, groups, g)
        absmax = w.abs().amax(-1).clamp(min=1e-8).half()  # stored in fp16: normalise by what is stored
        normalised = w / absmax.float()[..., None]
        codes = (normalised[..., None] - layer.codebook).abs().argmin(-1).reshape(layer.out_features, -1)
        layer.qweight.copy_(codes[:, 0::2] | (codes[:, 1::2] << 4))
        layer.absmax.copy_(absmax)
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        codes = torch.stack((self.qweight & 0xF, self.qweight >> 4), dim=-1).flatten(-2).long()
        w = self.codebook[codes].reshape(self.out_features, -1, self.group_size) * self.absmax.float()[..., None]
        return w.reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype))


class FP8Linear(nn.Module):
    """Weight-only FP8 E4M3: weight stored as torch.float8_e4m3fn, one float32 scale per output channel."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.float8_e4m3fn))
        self.register_buffer("scale", torch.ones(out_features, 1))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> FP8Linear:
        if linear.bias is not None:
            raise ValueError("FP8Linear 不支持 bias / FP8Linear takes a linear without bias")
        layer = cls(linear.in_features, linear.out_features)
        w = linear.weight.detach().float()
        scale = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / E4M3_MAX  # the row's max lands on 448
        layer.weight.copy_((w / scale).to(torch.float8_e4m3fn))  # the cast rounds to the nearest E4M3 value
        layer.scale.copy_(scale)
        return layer

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight.float() * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype))


@dataclass(frozen=True)
class Format:
    """One row of the comparison: how to turn the float model into this format, and what to call it."""

    name: str
    bits_per_weight: float  # from the formula (1.1): payload bits + scale / zero point bits shared per weight
    apply: Callable[[nn.Module], object] | None = None  # quantizes the model in place; None keeps it
    dtype: torch.dtype = torch.bfloat16  # what the rest of the model and the activations run in
    no_speed: str = ""  # why the CPU speed is not measured ("" = measure it)


FORMAT_KEYS = ("format", "bits_per_weight", "weight_bytes", "ppl", "kl", "tokens_per_s", "note")


def compare_formats(load_model: Callable[[], nn.Module], formats: Sequence[Format], ids: torch.Tensor, *,
                    baseline: list[torch.Tensor] | None = None, speed: Callable[[nn.Module], float] | None = None,
                    progress: Callable[[str], None] | None = None) -> list[dict]:
    """Take a fresh copy of the same model through each format; one row each (keys FORMAT_KEYS): perplexity
    and KL on ids against the float32 model as loaded (or its log-probabilities `baseline`, if given),
    measured linear bytes, and speed(model) tokens/s unless the format says why not (then None, and the
    reason as the note)."""
    if not formats:
        raise ValueError("formats 不能为空 / formats must not be empty")
    if not all(isinstance(f, Format) for f in formats):
        raise TypeError(f"formats 的每一项都必须是 Format / every item of formats must be a Format, got "
                        f"{[type(f).__name__ for f in formats]}")
    names = [f.name for f in formats]
    if len(set(names)) != len(names):
        raise ValueError(f"formats 的名字必须不同 / format names must be distinct, got {names}")
    if baseline is None:
        baseline = log_probs(load_model(), ids)
    say = progress or (lambda message: None)
    rows = []
    for index, fmt in enumerate(formats, 1):
        say(f"{fmt.name} ({index}/{len(formats)}): quantizing …")
        model = load_model()
        if fmt.apply is not None:
            fmt.apply(model)
        cast_floats(model, fmt.dtype)
        say(f"{fmt.name} ({index}/{len(formats)}): evaluating …")
        result = evaluate(model, ids, baseline)
        measured = speed is not None and not fmt.no_speed
        if measured:
            say(f"{fmt.name} ({index}/{len(formats)}): timing decode …")
        rows.append({"format": fmt.name, "bits_per_weight": fmt.bits_per_weight,
                     "weight_bytes": linear_weight_bytes(model), "ppl": result["ppl"], "kl": result["kl"],
                     "tokens_per_s": speed(model) if measured else None, "note": fmt.no_speed})
    return rows
