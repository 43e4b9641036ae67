"""A decode step with no host work inside: static shapes, the position as a tensor, argmax on the device.

静态解码步：KV 缓存预先按最大长度分配，位置是一个张量，注意力对整个缓存加掩码，RoPE 按位置张量取表，
贪心 argmax 也在设备上——一步里没有任何 Python 整数随 token 变化，所以整步可以录进一个 CUDA graph 反复回放。
kata.decode.generate (KVCache, Python positions) stays the readable oracle; this path computes the same tokens.

    decoder = StaticDecoder(model, batch=1, max_len=96)
    first = decoder.prefill(prompt)          # (B, 1): the greedy next token after the prompt
    nxt = decoder.step(first)                # (B, 1): and after that one; every step the same shapes

Each step writes its keys and values at `pos` with index_copy_, attends over all max_len cached positions with a
mask (key j is visible to query i when j ≤ pos + i), takes RoPE's cos / sin rows at pos, and advances pos in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kata.llama import MLP, Attention, Llama, rope_tables

PACKS = {"self_attn": (("q_proj", "k_proj", "v_proj"), ("o_proj",)), "mlp": (("gate_proj", "up_proj"), ("down_proj",))}


class StaticDecoder:
    """Greedy decoding for `batch` sequences of at most `max_len` tokens in all, with every buffer allocated once.
    compiled: the one-token step goes through torch.compile (prefill stays eager), which fuses the dozens of small
    kernels of each layer's norms, RoPE and residual adds — what a graph still pays for, one launch each."""

    def __init__(self, model: Llama, batch: int, max_len: int, compiled: bool = False) -> None:
        for name, value in (("batch", batch), ("max_len", max_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} 必须是正整数 / {name} must be a positive int, got {value!r}")
        cfg, weight = model.cfg, model.embed_tokens.weight
        self.model, self.batch, self.max_len = model, batch, max_len
        # One tensor a layer: torch.compile then writes each in place; as views of one (layers, …) tensor the
        # compiled step copied every layer's cache and wrote the whole cache back, every token.
        shape = (batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        self.keys = [torch.zeros(shape, dtype=weight.dtype, device=weight.device) for _ in range(cfg.num_layers)]
        self.values = [torch.zeros(shape, dtype=weight.dtype, device=weight.device) for _ in range(cfg.num_layers)]
        cos, sin = rope_tables(cfg.head_dim, max_len, cfg.rope_theta)
        self.cos, self.sin = cos.to(weight.device, weight.dtype), sin.to(weight.device, weight.dtype)
        self.positions = torch.arange(max_len, device=weight.device)
        self.pos = torch.zeros((), dtype=torch.long, device=weight.device)  # where the next token goes
        self.length = 0  # the same, kept on the host: checked before every step, never read from the device
        self._step = _compiled(self._forward, model) if compiled else self._forward

    def _check(self, ids: torch.Tensor, room: int) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 2:
            raise TypeError(f"ids 必须是 (B, T) 的 int64 张量 / ids must be an int64 (B, T) tensor, got "
                            f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
        if ids.shape[0] != self.batch:
            raise ValueError(f"batch 变了 / batch changed: ids has {ids.shape[0]} rows, the decoder was built for "
                             f"batch={self.batch}")
        if ids.shape[1] > room:
            raise ValueError(f"提示词放不进缓存 / the prompt does not fit the cache: {ids.shape[1]} tokens, "
                             f"max_len={self.max_len} leaves room for {room}")

    def _attention(self, attn: Attention, x: torch.Tensor, layer: int, where: torch.Tensor) -> torch.Tensor:
        """x (B, T, hidden) at positions `where` (T,): write their K/V there, attend over the whole cache."""
        q, k, v = attn.heads(*projections(attn, PACKS["self_attn"][0], x), self.cos[where], self.sin[where])
        self.keys[layer].index_copy_(2, where, k.to(self.keys[layer].dtype))  # (B, nkv, max_len, hd)
        self.values[layer].index_copy_(2, where, v.to(self.values[layer].dtype))
        visible = self.positions[None, :] <= where[:, None]  # (T, max_len): key j for the query at where[i]
        mixed = attn.mix(q, self.keys[layer], self.values[layer], attn_mask=visible)
        return projections(attn, PACKS["self_attn"][1], mixed)[0]

    @staticmethod
    def _mlp(mlp: MLP, x: torch.Tensor) -> torch.Tensor:
        gate, up = projections(mlp, PACKS["mlp"][0], x)
        return projections(mlp, PACKS["mlp"][1], F.silu(gate) * up)[0]  # SwiGLU

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The greedy next token after each row of ids (B, T), placed at pos …; advances pos by T."""
        model = self.model
        where = self.pos + self.positions[: ids.shape[1]]  # (T,): a tensor, never a Python int
        x = model.embed_tokens(ids)
        for layer, block in enumerate(model.layers):
            x = x + self._attention(block.self_attn, block.input_layernorm(x), layer, where)
            x = x + self._mlp(block.mlp, block.post_attention_layernorm(x))
        logits = model.lm_head(model.norm(x[:, -1:]))  # (B, 1, vocab): only the last position is needed
        self.pos += ids.shape[1]
        return logits.argmax(-1)  # (B, 1), on the device

    @torch.no_grad()
    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """Start over with prompt (B, T): the greedy next token (B, 1). Checks the prompt against the cache."""
        self._check(prompt, self.max_len)
        self.pos.zero_()
        self.length = prompt.shape[1]
        return self._forward(prompt)

    @property
    def full(self) -> bool:
        """No room in the cache for another token."""
        return self.length >= self.max_len

    def advance(self) -> None:
        """Count one more token on the host; a ValueError naming max_len when the cache has no room for it."""
        if self.full:
            raise ValueError(f"KV 缓存已满 / the cache is full: max_len={self.max_len} tokens already decoded")
        self.length += 1

    @torch.no_grad()
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """One new token per row, ids (B, 1) → the next (B, 1). No device checks and no host sync (the room is
        counted on the host): a graph replays the same kernels."""
        self.advance()
        return self._step(ids)


@torch.no_grad()
def generate_static(model: Llama, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy continuation of prompt (B, T) through a StaticDecoder: the new ids (B, new_tokens), the same as
    kata.decode.generate's."""
    decoder = StaticDecoder(model, prompt.shape[0], prompt.shape[1] + new_tokens)
    out = [decoder.prefill(prompt)]
    for _ in range(new_tokens - 1):
        out.append(decoder.step(out[-1]))
    return torch.cat(out, dim=1)


def _compiled(forward: Callable[[torch.Tensor], torch.Tensor], model: Llama) -> Callable[[torch.Tensor], torch.Tensor]:
    """forward under torch.compile: the model's own glue (norms, RoPE, cache writes, residual adds, SwiGLU's
    product) fused into a few generated kernels. Layers from outside torch and kata — a learner's quantized linears
    and their kernels — run as they are: the compiler calls them and never traces into them, unless the layer
    declares `traceable = True` (its forward is made of ops torch.compile knows, such as a registered custom op)."""
    for module in model.modules():
        outside = not type(module).__module__.startswith(("torch.", "kata.")) and not getattr(module, "traceable", 0)
        if outside and not getattr(module.forward, "_torchdynamo_disable", False):
            module.forward = torch.compiler.disable(module.forward)
    return torch.compile(forward, dynamic=False)


class GraphedStep:
    """decoder.step captured once in a CUDA graph: each call copies the token in and replays every kernel of the
    step (all layers, the head, argmax) with no Python between them. Capture after prefill, with room for a step;
    the warm-up step it runs first is undone (its K/V sit where the next real step writes before anyone reads).
    A token of another batch size, or a step past max_len, is a ValueError: a replay never checks anything."""

    @torch.no_grad()
    def __init__(self, decoder: StaticDecoder) -> None:
        if decoder.pos.device.type != "cuda":
            raise ValueError(f"CUDA graph 需要 CUDA 设备 / a CUDA graph needs a CUDA device, the decoder is on "
                             f"{decoder.pos.device}")
        if decoder.full:
            raise ValueError(f"缓存没有空位 / no room left for a step: max_len={decoder.max_len}")
        self.decoder = decoder
        self.token = torch.zeros(decoder.batch, 1, dtype=torch.long, device=decoder.pos.device)
        start = decoder.pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up outside the graph, as torch.cuda.graphs asks
            decoder._step(self.token)
        torch.cuda.current_stream().wait_stream(side)
        decoder.pos.copy_(start)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):  # recorded, not run: pos stays where the warm-up left it undone
            self.out = decoder._step(self.token)

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        if token.shape != self.token.shape:
            raise ValueError(f"batch 或形状变了 / batch or shape changed since the capture: token "
                             f"{tuple(token.shape)}, captured {tuple(self.token.shape)}")
        self.decoder.advance()
        self.token.copy_(token)
        self.graph.replay()
        return self.out.clone()


@torch.no_grad()
def generate_graphed(model: Llama, prompt: torch.Tensor, new_tokens: int, compiled: bool = False) -> torch.Tensor:
    """generate_static with every one-token step replayed from one CUDA graph (prefill stays eager); compiled:
    the step is compiled by torch.compile before it is captured."""
    decoder = StaticDecoder(model, prompt.shape[0], prompt.shape[1] + new_tokens, compiled)
    out = [decoder.prefill(prompt)]
    step = GraphedStep(decoder) if new_tokens > 1 else None
    for _ in range(new_tokens - 1):
        out.append(step(out[-1]))
    return torch.cat(out, dim=1)



def timed_generation(decoder: StaticDecoder, step: Callable[[torch.Tensor], torch.Tensor], prompt: torch.Tensor,
                     new_tokens: int) -> tuple[float, float]:
    """One greedy generation, decoder.prefill then new_tokens − 1 calls of step (decoder.step, a GraphedStep, a
    compiled step): (prefill s, decode s), the device synchronized around each. Starts over in the same decoder,
    so a graph's buffers never move."""
    torch.cuda.synchronize()
    started = time.perf_counter()
    token = decoder.prefill(prompt)
    torch.cuda.synchronize()
    prefilled = time.perf_counter()
    for _ in range(new_tokens - 1):
        token = step(token)
    torch.cuda.synchronize()
    return prefilled - started, time.perf_counter() - prefilled


def graphed_generation(model: Llama, prompt: torch.Tensor, new_tokens: int,
                       compiled: bool = False) -> tuple[Callable[[], tuple], float]:
    """(a callable that runs timed_generation through one captured CUDA graph, the seconds to compile (compiled:
    torch.compile fuses the step's glue first) and capture it)."""
    started = time.perf_counter()
    decoder = StaticDecoder(model, prompt.shape[0], prompt.shape[1] + new_tokens, compiled)
    decoder.step(decoder.prefill(prompt))  # compiles here, on the default stream, when compiled
    step = GraphedStep(decoder)
    torch.cuda.synchronize()
    return (lambda: timed_generation(decoder, step, prompt, new_tokens)), time.perf_counter() - started


# The deploy step for speed: the quantized projections that read one input run as one kernel launch.
_KERNELS: list[tuple[Callable, type]] = []  # (a target's quantized_matmul, its KernelWeights class), by index


@torch.library.custom_op("kata::packed_matmul", mutates_args=())
def _packed_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, num_bits: int,
                   group_size: int, kernel: int) -> torch.Tensor:
    """x · ŵᵀ through kernel number `kernel` (_KERNELS): one opaque op to torch.compile, so the step compiles as
    one graph (no break at each quantized layer) and the glue between the matmuls fuses across them."""
    matmul, weights_type = _KERNELS[kernel]
    return matmul(x, weights_type(qweight, scales, zeros, num_bits, group_size))


@_packed_matmul.register_fake
def _(x, qweight, scales, zeros, num_bits, group_size, kernel):
    return x.new_empty(*x.shape[:-1], qweight.shape[1])


class PackedProjections(nn.Module):
    """Quantized projections of one input (q, k, v; gate, up; or one alone) as one 5.10 kernel launch: each layer
    prepared once, here, and the results concatenated along N; forward splits the output back."""

    def __init__(self, layers: list[nn.Module], prepare: Callable, matmul: Callable) -> None:
        super().__init__()
        parts = [prepare(q.qweight, q.scale, getattr(q, "zero_point", None), q.num_bits, q.group_size) for q in layers]
        joined = [torch.cat([getattr(p, name) for p in parts], dim=1) for name in ("qweight", "scales", "zeros")]
        self.weights = type(parts[0])(*joined, parts[0].num_bits, parts[0].group_size)  # an attribute, not a buffer
        self.widths = [p.qweight.shape[1] for p in parts]
        biases = [q.bias if q.bias is not None else torch.zeros(w, device=q.qweight.device)
                  for q, w in zip(layers, self.widths, strict=True)]
        self.bias = None if all(q.bias is None for q in layers) else torch.cat([b.float() for b in biases])
        if (matmul, type(parts[0])) not in _KERNELS:
            _KERNELS.append((matmul, type(parts[0])))
        self.kernel = _KERNELS.index((matmul, type(parts[0])))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        w = self.weights
        y = torch.ops.kata.packed_matmul(x, w.qweight, w.scales, w.zeros, w.num_bits, w.group_size, self.kernel)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.split(self.widths, dim=-1)


def quantized_layer(module: nn.Module) -> nn.Module | None:
    """The 5.3 QuantLinear in module: itself, or the layer a wrapper (5.10's KernelLinear) holds; None if none."""
    return next((m for m in module.modules() if all(hasattr(m, a) for a in ("qweight", "scale", "num_bits"))), None)


def pack_projections(model: Llama, prepare: Callable, matmul: Callable) -> int:
    """Deploy for decode speed, once, at load: in every block, q/k/v and gate/up (each group of one format) become
    one PackedProjections each, o_proj and down_proj one each, all prepared by 5.10's `prepare` now and run by its
    `matmul` (quantized_matmul). The model keeps q_proj … down_proj, which the exercises, the lab and the GGUF
    export address; the decoders here run the packs (`projections`). Returns how many packs were made."""
    made = 0
    for block in model.layers:
        for part, groups in PACKS.items():
            module, packs = getattr(block, part), {}
            for names in groups:
                layers = [quantized_layer(getattr(module, name)) for name in names]
                if None not in layers and len({(q.num_bits, q.group_size) for q in layers}) == 1:
                    packs[names] = PackedProjections(layers, prepare, matmul)
            module.packed = packs
            made += len(packs)
    return made


def projections(module: nn.Module, names: tuple[str, ...], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The outputs of module's projections `names` for x: one packed launch where pack_projections made one."""
    pack = getattr(module, "packed", {}).get(names)
    return pack(x) if pack is not None else tuple(getattr(module, name)(x) for name in names)
