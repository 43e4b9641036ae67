"""3.2 · 4.1 Q3 — which layers can take fewer bits: sensitivity, a mixed-precision plan, PTQ / mixed / QAT (solution).

层敏感度与混合精度（参考答案）。Quantize one linear, or one kind of linear, and nothing else; the KL from the
float model's next-token distributions is that layer's sensitivity. The noise of one layer is small, so the KLs
of layers quantized together roughly add up: a plan's KL is predicted by the sum of its layers' KLs. The plan
gives each layer one of a few formats so that the average bits per weight stay within a budget: start every
layer at the cheapest format and keep buying the upgrade with the largest predicted KL drop per extra byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kata.llama import Llama
from kata.oracles import rtn
from kata.sequential import first_block_input, rope, run_block
from kata.validate import check_num_bits, check_positive

KINDS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
         "mlp.up_proj", "mlp.down_proj")
Format = tuple[int, int | None]  # (bits, group_size); group None: one group per output row
OPTIONS: tuple[Format, ...] = ((3, 64), (4, 64), (8, None))
SCHEMES = ("PTQ", "wider format", "mixed precision", "QAT")


def layer_bytes(out_features: int, in_features: int, num_bits: int, group_size: int | None) -> int:
    """What 5.3 stores: codes ⌈out·in·bits / 8⌉ bytes, and per group an fp16 scale plus, below 8 bits, a uint8
    zero point (8 bits is symmetric per row: no zero point)."""
    check_num_bits(num_bits)
    group = in_features if group_size is None else group_size
    if group <= 0 or in_features % group:
        raise ValueError(f"group_size 必须整除 in_features / group_size must divide in_features={in_features}, "
                         f"got {group_size!r}")
    metadata = 2 + (num_bits < 8)  # fp16 scale (+ uint8 zero point)
    return -(-out_features * in_features * num_bits // 8) + out_features * (in_features // group) * metadata


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Every block linear (names ending in _proj) → (out_features, in_features), in model order."""
    return {name: tuple(m.weight.shape) for name, m in model.named_modules() if name.endswith("_proj")}


def plan_bits(plan: Mapping[str, Format], shapes: Mapping[str, tuple[int, int]]) -> float:
    """Average bits per weight of a plan: 8 · Σ bytes / Σ weights over its layers."""
    weights = sum(shapes[name][0] * shapes[name][1] for name in plan)
    return 8 * sum(layer_bytes(*shapes[name], *fmt) for name, fmt in plan.items()) / weights


def quantize_layers(model: nn.Module, plan: Mapping[str, Format]) -> None:
    """Round-to-nearest in place, only the layers in plan, each at its (bits, group_size): asymmetric below 8
    bits, symmetric per row at 8 (kata.oracles.rtn)."""
    with torch.no_grad():
        for name, (num_bits, group_size) in plan.items():
            layer = model.get_submodule(name)
            layer.weight.copy_(rtn(layer.weight, num_bits, group_size, symmetric=num_bits == 8))


def _check_names(names: Sequence[str], known: Mapping[str, object], argument: str) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"{argument} 里有未知的层 / {argument} names unknown layers: {unknown}")


def sensitivity(model: Llama, ids: torch.Tensor, baseline: list[torch.Tensor],
                groups: Mapping[str, Sequence[str]], num_bits: int = 3, group_size: int | None = 64,
                progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """For each group (a label → the linears quantized together), KL(baseline ‖ model) on ids with only those
    linears at (num_bits, group_size); every weight is restored before the next group.

    The blocks before a group's first layer compute what the float model computes, so their outputs are worked
    out once (float32) and each run starts at the first block the group touches."""
    with torch.no_grad():
        check_num_bits(num_bits)
        shapes = linear_shapes(model)
        _check_names([name for names in groups.values() for name in names], shapes, "groups")
        cos, sin = rope(model, ids.shape[1])
        stream = [first_block_input(model, ids)]  # stream[i]: the float input of block i
        for block in model.layers:
            stream.append(run_block(block, stream[-1], cos, sin, dtype=None))
        reference = torch.stack(baseline).float()  # (B, T − 1, vocab) log-probabilities of the float model
        out = {}
        for index, (label, names) in enumerate(groups.items()):
            saved = [model.get_submodule(name).weight.detach().clone() for name in names]
            quantize_layers(model, dict.fromkeys(names, (num_bits, group_size)))
            first = min(int(name.split(".")[1]) for name in names)  # "layers.7.mlp.up_proj" → block 7
            x = stream[first]
            for block in model.layers[first:]:
                x = run_block(block, x, cos, sin, dtype=None)
            logp = F.log_softmax(model.lm_head(model.norm(x))[:, :-1].float(), dim=-1)
            out[label] = ((reference.exp() * (reference - logp)).sum(-1).mean()).item()  # mean over positions
            for name, weight in zip(names, saved, strict=True):
                model.get_submodule(name).weight.copy_(weight)
            if progress is not None and ((index + 1) % 30 == 0 or index + 1 == len(groups)):
                progress(f"W{num_bits} sensitivity {index + 1}/{len(groups)}: {label} KL {out[label]:.4f}")
        return out


def plan_precision(kl: Mapping[str, Mapping[int, float]], shapes: Mapping[str, tuple[int, int]],
                   budget_bits: float, options: Sequence[Format] = OPTIONS) -> dict[str, Format]:
    """Per layer a format from options (cheapest first) with average bits ≤ budget_bits and the least summed KL,
    greedily: all layers at options[0]; then, while one fits, take the upgrade (to any wider option) with the
    largest KL drop per extra byte (on a tie, the first in kl's order). kl[layer][bits] is the layer's measured
    sensitivity at that width."""
    _check_names(list(kl), shapes, "kl")
    widths = {bits for bits, _ in options}
    lacking = [name for name in kl if not widths <= set(kl[name])]
    if lacking:
        raise ValueError(f"kl[{lacking[0]!r}] 缺少某个位宽的 KL / kl[{lacking[0]!r}] lacks a KL for one of the "
                         f"widths {sorted(widths)}")
    cheapest = plan_bits(dict.fromkeys(kl, options[0]), shapes)
    if isinstance(budget_bits, bool) or not isinstance(budget_bits, (int, float)) or \
            not cheapest <= budget_bits <= 16:
        raise ValueError(f"budget_bits 必须在 {cheapest:.3f}（最便宜的格式）到 16 之间 / budget_bits must be between "
                         f"{cheapest:.3f} (the cheapest option) and 16, got {budget_bits!r}")
    cost = {name: [layer_bytes(*shapes[name], *fmt) for fmt in options] for name in kl}
    choice = dict.fromkeys(kl, 0)
    budget = budget_bits * sum(shapes[name][0] * shapes[name][1] for name in kl) / 8
    spent = sum(cost[name][0] for name in kl)
    while True:
        best = None  # (KL drop per byte, layer, option index)
        for name, now in choice.items():
            for up in range(now + 1, len(options)):
                extra = cost[name][up] - cost[name][now]
                drop = kl[name][options[now][0]] - kl[name][options[up][0]]
                if spent + extra <= budget and drop > 0 and (best is None or drop / extra > best[0]):
                    best = (drop / extra, name, up)
        if best is None:
            return {name: options[index] for name, index in choice.items()}
        _, name, up = best
        spent += cost[name][up] - cost[name][choice[name]]
        choice[name] = up


def choose_scheme(ptq_kl: float, max_kl: float, layer_kl: Mapping[str, float], target_bits: int,
                  budget_bits: float, top_share: float = 0.1, concentrated: float = 0.5) -> tuple[str, str]:
    """Self-check Q3 from measurements: (scheme, reason).
    - PTQ             the best post-training result at target_bits already has KL ≤ max_kl;
    - wider format    else, if the budget pays one more bit on every weight (budget_bits ≥ target_bits + 1);
    - mixed precision else, if the sensitivity is concentrated: the most sensitive top_share of the layers holds
                      at least `concentrated` of the summed layer KL, so a few wider layers buy most of it back;
    - QAT             else: PTQ falls short, no bits to spare, the damage is everywhere — train with it."""
    check_num_bits(target_bits, name="target_bits")
    for value, name in ((max_kl, "max_kl"), (budget_bits, "budget_bits")):
        check_positive(value, name)
    if isinstance(ptq_kl, bool) or not isinstance(ptq_kl, (int, float)) or not ptq_kl >= 0:
        raise ValueError(f"ptq_kl 必须是 ≥ 0 的数 / ptq_kl must be a number ≥ 0, got {ptq_kl!r}")
    if not layer_kl or not all(v >= 0 for v in layer_kl.values()):
        raise ValueError("layer_kl 必须非空且每个 KL ≥ 0 / layer_kl must hold at least one KL, each ≥ 0")
    if ptq_kl <= max_kl:
        return "PTQ", f"PTQ at {target_bits} bits reaches KL {ptq_kl:.4f} ≤ {max_kl:.4f}"
    if budget_bits >= target_bits + 1:
        return "wider format", (f"PTQ at {target_bits} bits misses (KL {ptq_kl:.4f} > {max_kl:.4f}) and "
                                f"{budget_bits:.2f} bits pay for {target_bits + 1} bits everywhere")
    ranked = sorted(layer_kl.values(), reverse=True)
    top = max(1, round(top_share * len(ranked)))
    share = sum(ranked[:top]) / sum(ranked) if sum(ranked) > 0 else 0.0
    if share >= concentrated:
        return "mixed precision", (f"PTQ misses (KL {ptq_kl:.4f} > {max_kl:.4f}), but the {top} most sensitive of "
                                   f"{len(ranked)} layers hold {share:.0%} of the layer KL: widen those")
    return "QAT", (f"PTQ misses (KL {ptq_kl:.4f} > {max_kl:.4f}), {budget_bits:.2f} bits leave no room for a wider "
                   f"format, and the top {top} layers hold only {share:.0%} of the layer KL: train with quantization")
