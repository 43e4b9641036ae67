"""Independent answer to ex5_11: test data for the similarity check, written without reading reference/."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kata.llama import Llama
from kata.oracles import rtn
from kata.sequential import first_block_input, rope, run_block
from kata.validate import check_group_size, check_num_bits, check_positive

KINDS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
         "mlp.up_proj", "mlp.down_proj")
Format = tuple[int, int | None]  # (bits, group_size)；None：每行一组 / one group per output row
OPTIONS: tuple[Format, ...] = ((3, 64), (4, 64), (8, None))
SCHEMES = ("PTQ", "wider format", "mixed precision", "QAT")

_BLOCK_INDEX = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _is_real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


# --- sizes --------------------------------------------------------------------------------------------------------

def layer_bytes(out_features: int, in_features: int, num_bits: int, group_size: int | None) -> int:
    """一个量化线性层的字节数 / bytes of one quantized linear."""
    check_num_bits(num_bits)
    per_group = check_group_size(group_size, in_features)
    code_bytes = (out_features * in_features * num_bits + 7) // 8
    n_groups = out_features * (in_features // per_group)
    meta_each = 2 if num_bits == 8 else 3  # fp16 scale (+ uint8 zero point below 8 bits)
    return int(code_bytes + n_groups * meta_each)


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """层名 → (out, in) / block linear name → (out_features, in_features)."""
    found: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.endswith("_proj"):
            found[name] = (module.out_features, module.in_features)
    return found


def _format_bytes(shape: tuple[int, int], fmt: Format) -> int:
    bits, group = fmt
    return layer_bytes(shape[0], shape[1], bits, group)


def plan_bits(plan: Mapping[str, Format], shapes: Mapping[str, tuple[int, int]]) -> float:
    """平均每权重比特 / average bits per weight."""
    strangers = [name for name in plan if name not in shapes]
    if strangers:
        raise ValueError(f"plan names layers missing from shapes: {strangers[:3]}")
    stored = sum(_format_bytes(shapes[name], fmt) for name, fmt in plan.items())
    weights = sum(shapes[name][0] * shapes[name][1] for name in plan)
    if weights == 0:
        raise ValueError("plan must name at least one layer")
    return 8 * stored / weights


# --- quantizing and measuring -------------------------------------------------------------------------------------

def quantize_layers(model: nn.Module, plan: Mapping[str, Format]) -> None:
    """只量化 plan 里的层 / RTN only the layers in plan, in place."""
    known = linear_shapes(model)
    for name, (bits, group) in plan.items():
        if name not in known:
            raise ValueError(f"plan names {name!r}, which is not a block linear of the model")
        check_num_bits(bits)
        weight = model.get_submodule(name).weight
        with torch.no_grad():
            weight.copy_(rtn(weight.detach().float(), bits, group, symmetric=(bits == 8)))


def _first_block(names: Sequence[str], n_blocks: int) -> int:
    starts = [int(m.group(1)) for m in map(_BLOCK_INDEX.search, names) if m]
    return min(starts, default=n_blocks)


@torch.no_grad()
def _kl_from(model: Llama, start: int, stream: list[torch.Tensor], cos: torch.Tensor, sin: torch.Tensor,
             baseline: list[torch.Tensor]) -> float:
    """Run blocks start… on the cached float input of block `start`, then the head; mean KL(baseline ‖ model)."""
    x = stream[start]
    for block in model.layers[start:]:
        x = run_block(block, x, cos, sin, dtype=None)
    total, positions = 0.0, 0
    for window, ref in enumerate(baseline):
        logits = model.lm_head(model.norm(x[window:window + 1]))[0, :-1].float()
        mine = F.log_softmax(logits, dim=-1)
        ref = ref.float()
        total += torch.sum(torch.exp(ref) * (ref - mine)).item()
        positions += mine.shape[0]
    return total / positions


def sensitivity(model: Llama, ids: torch.Tensor, baseline: list[torch.Tensor],
                groups: Mapping[str, Sequence[str]], num_bits: int = 3, group_size: int | None = 64,
                progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """每组只量化它的层时的 KL / the KL with only each group's layers quantized."""
    check_num_bits(num_bits)
    known = linear_shapes(model)
    for label, names in groups.items():
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(f"groups[{label!r}] names layers the model does not have: {missing}")
        for n in names:
            check_group_size(group_size, known[n][1])

    cos, sin = rope(model, ids.shape[1])
    with torch.no_grad():
        stream = [first_block_input(model, ids)]
        for block in model.layers:
            stream.append(run_block(block, stream[-1], cos, sin, dtype=None))

    measured: dict[str, float] = {}
    count = len(groups)
    for step, (label, names) in enumerate(groups.items(), start=1):
        saved = {n: model.get_submodule(n).weight.detach().clone() for n in names}
        try:
            quantize_layers(model, {n: (num_bits, group_size) for n in names})
            measured[label] = _kl_from(model, _first_block(names, len(model.layers)), stream, cos, sin, baseline)
        finally:
            with torch.no_grad():
                for n, original in saved.items():
                    model.get_submodule(n).weight.copy_(original)
        if progress is not None and (step % 30 == 0 or step == count):
            progress(f"sensitivity: {step}/{count} groups measured (last: {label})")
    return measured


# --- planning -----------------------------------------------------------------------------------------------------

def plan_precision(kl: Mapping[str, Mapping[int, float]], shapes: Mapping[str, tuple[int, int]],
                   budget_bits: float, options: Sequence[Format] = OPTIONS) -> dict[str, Format]:
    """预算内的贪心混合精度方案 / a greedy mixed-precision plan within the budget."""
    layers = list(kl)
    if not layers:
        raise ValueError("kl must hold at least one layer")
    for name in layers:
        if name not in shapes:
            raise ValueError(f"kl names {name!r}, which shapes (the model) does not have")
        lacking = [bits for bits, _ in options if bits not in kl[name]]
        if lacking:
            raise ValueError(f"kl[{name!r}] has no measurement for {lacking} bits")

    n_weights = sum(shapes[n][0] * shapes[n][1] for n in layers)
    cost = {n: [_format_bytes(shapes[n], fmt) for fmt in options] for n in layers}

    def avg_bits(total_bytes: int) -> float:
        return 8 * total_bytes / n_weights

    floor_bits = avg_bits(sum(c[0] for c in cost.values()))
    if not _is_real(budget_bits) or not floor_bits <= budget_bits <= 16:
        raise ValueError(f"budget_bits must lie between the cheapest plan ({floor_bits:.4f}) and 16, "
                         f"got {budget_bits!r}")

    choice = dict.fromkeys(layers, 0)
    used = sum(c[0] for c in cost.values())
    while True:
        pick, pick_rate = None, -math.inf
        for n in layers:
            here = choice[n]
            kl_here = kl[n][options[here][0]]
            for there in range(here + 1, len(options)):
                gain = kl_here - kl[n][options[there][0]]
                extra = cost[n][there] - cost[n][here]
                if gain <= 0 or avg_bits(used + extra) > budget_bits:
                    continue
                rate = gain / extra if extra > 0 else math.inf
                if rate > pick_rate:
                    pick, pick_rate = (n, there, extra), rate
        if pick is None:
            break
        n, there, extra = pick
        choice[n] = there
        used += extra
    return {n: tuple(options[choice[n]]) for n in layers}


def choose_scheme(ptq_kl: float, max_kl: float, layer_kl: Mapping[str, float], target_bits: int,
                  budget_bits: float, top_share: float = 0.1, concentrated: float = 0.5) -> tuple[str, str]:
    """PTQ / wider format / mixed precision / QAT，附理由 / with the reason."""
    if not _is_real(ptq_kl) or ptq_kl < 0:
        raise ValueError(f"ptq_kl must be a KL ≥ 0, got {ptq_kl!r}")
    check_positive(max_kl, "max_kl")
    check_positive(budget_bits, "budget_bits")
    check_num_bits(target_bits, name="target_bits")
    if not layer_kl:
        raise ValueError("layer_kl must hold at least one layer's KL")
    if any(not _is_real(v) or v < 0 for v in layer_kl.values()):
        raise ValueError("layer_kl values must be KLs ≥ 0")
    if not _is_real(top_share) or not 0 < top_share <= 1:
        raise ValueError(f"top_share must be in (0, 1], got {top_share!r}")
    if not _is_real(concentrated) or not 0 < concentrated <= 1:
        raise ValueError(f"concentrated must be in (0, 1], got {concentrated!r}")

    if ptq_kl <= max_kl:
        return "PTQ", (f"the best PTQ at {target_bits} bits already reaches KL {ptq_kl:.4f}, "
                       f"within the bar of {max_kl:.4f}: no training needed")
    wider = target_bits + 1
    if budget_bits >= wider:
        return "wider format", (f"PTQ at {target_bits} bits misses the bar (KL {ptq_kl:.4f} > {max_kl:.4f}), "
                                f"but a budget of {budget_bits:g} bits/weight pays for {wider} bits everywhere")

    ranked = sorted(layer_kl.values(), reverse=True)
    top = max(1, round(top_share * len(ranked)))
    whole = sum(ranked)
    share = sum(ranked[:top]) / whole if whole > 0 else 0.0
    where = f"the {top} most sensitive of {len(ranked)} layers hold {share * 100:.0f}% of the summed layer KL"
    if share >= concentrated:
        return "mixed precision", (f"PTQ KL {ptq_kl:.4f} > {max_kl:.4f} and no room for {wider} bits, but {where}: "
                                   f"give those layers more bits")
    return "QAT", (f"PTQ KL {ptq_kl:.4f} > {max_kl:.4f}, no room for {wider} bits, and {where} "
                   f"(below {concentrated * 100:.0f}%): the error is spread out, so train through it")
