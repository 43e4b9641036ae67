"""Greedy decoding with a KV cache, and decode speed as a user feels it: tokens per second, batch 1.

解码速度：先用提示词预填充（prefill），再每次只喂一个新 token（KV 缓存）；计时只算逐 token 的解码，
多次运行取中位数，预热不计，并写明线程数。
Protocol: prefill the prompt, then generate `new_tokens` one at a time with a KV cache; time the
one-token steps only (prefill is reported apart); `runs` timed runs after one warm-up; the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from kata.llama import KVCache, Llama

PROMPT_TOKENS = 64
NEW_TOKENS = 32
RUNS = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate(model: Llama, prompt: torch.Tensor, new_tokens: int) -> tuple[torch.Tensor, float, float]:
    """Greedy continuation of prompt (B, T): returns (new ids (B, new_tokens), prefill s, decode s)."""
    weight = model.embed_tokens.weight
    cache = KVCache(model.cfg, prompt.shape[0], prompt.shape[1] + new_tokens, weight.dtype, weight.device)
    _sync(weight.device)
    started = time.perf_counter()
    next_id = model(prompt, cache)[:, -1].argmax(-1, keepdim=True)
    _sync(weight.device)
    prefilled = time.perf_counter()
    out = [next_id]
    for _ in range(new_tokens - 1):
        next_id = model(next_id, cache)[:, -1].argmax(-1, keepdim=True)
        out.append(next_id)
    _sync(weight.device)
    return torch.cat(out, dim=1), prefilled - started, time.perf_counter() - prefilled


def decode_speed(model: Llama, prompt: torch.Tensor, new_tokens: int = NEW_TOKENS, runs: int = RUNS,
                 graphed: bool | None = None, compiled: bool = False) -> dict:
    """Median decode tokens/s (batch = prompt.shape[0] sequences, each token counted) over `runs` timed runs.
    graphed (default: on CUDA) replays each step from one CUDA graph (kata.static_decode), compiled first by
    torch.compile when compiled; a model whose step cannot be captured falls back to this eager loop with a
    one-line notice. "capture_s" is the one-off compile and capture time."""
    if graphed is None:
        graphed = prompt.is_cuda
    if graphed:
        from kata.static_decode import graphed_generation

        try:
            run, capture_s = graphed_generation(model, prompt, new_tokens, compiled)
            return {**timed_runs(run, prompt.shape[0], new_tokens, runs), "capture_s": capture_s, "graphed": True}
        except RuntimeError as error:  # e.g. a layer that syncs with the host or allocates on another stream
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            print(f"CUDA graph 录制失败，改用 eager / could not capture the step, decoding eagerly: {first_line}")
    return {**timed_runs(lambda: generate(model, prompt, new_tokens)[1:], prompt.shape[0], new_tokens, runs),
            "graphed": False}


def timed_runs(run: Callable[[], tuple[float, float]], batch: int, new_tokens: int, runs: int) -> dict:
    """The protocol every decode figure shares: run() once to warm up (first-call allocations, packed weights,
    autotuning), then `runs` times; run returns (prefill s, decode s). Medians; the first new token of each
    sequence comes from the prefill, so decode covers batch · (new_tokens − 1) tokens."""
    run()
    timings = [run() for _ in range(runs)]
    decode_s = statistics.median(t[1] for t in timings)
    return {"tokens_per_s": batch * (new_tokens - 1) / decode_s, "prefill_s": statistics.median(t[0] for t in timings),
            "batch": batch, "runs": runs, "threads": torch.get_num_threads()}
