"""Text, windows and the evaluation protocol: perplexity and KL divergence from the baseline.

评测协议 / evaluation protocol (fixed, so numbers compare across runs):
- 评测文本 / evaluation: *Persuasion* (kata/data/persuasion_eval.txt), tokenized whole; the first
  EVAL_WINDOWS non-overlapping windows of WINDOW tokens; each window predicts its last WINDOW - 1 tokens.
- 校准文本 / calibration: *Pride and Prejudice* (kata/data/pride_and_prejudice_calibration.txt), a different
  novel; the first n non-overlapping windows of WINDOW tokens.
- perplexity = exp(mean next-token NLL); KL = mean over predicted positions of KL(p_baseline ‖ p_model).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DATA = Path(__file__).resolve().parent / "data"
EVAL_TEXT = "persuasion_eval.txt"
CALIBRATION_TEXT = "pride_and_prejudice_calibration.txt"
WINDOW = 512
EVAL_WINDOWS = 16  # 16 × 511 = 8,176 predicted tokens


def text_tokens(name: str, tokenizer=None) -> torch.Tensor:
    """The whole text file tokenized with `tokenizer` (a `tokenizers.Tokenizer`; default: the real model's, read
    once per process): (n_tokens,) int64."""
    if tokenizer is None:
        return _default_tokens(name)
    text = (DATA / name).read_text(encoding="utf-8")
    return torch.tensor(tokenizer.encode(text).ids, dtype=torch.long)


@functools.cache
def _default_tokens(name: str) -> torch.Tensor:
    from kata.smollm2 import load_tokenizer

    return text_tokens(name, load_tokenizer())


def windows(tokens: torch.Tensor, count: int, length: int = WINDOW) -> torch.Tensor:
    """The first `count` non-overlapping windows: (count, length)."""
    if count * length > tokens.numel():
        raise ValueError(f"文本太短 / text too short: {count} × {length} > {tokens.numel()} tokens")
    return tokens[: count * length].view(count, length)


def eval_windows(count: int = EVAL_WINDOWS, tokenizer=None) -> torch.Tensor:
    return windows(text_tokens(EVAL_TEXT, tokenizer), count)


def calibration_windows(count: int, tokenizer=None) -> torch.Tensor:
    return windows(text_tokens(CALIBRATION_TEXT, tokenizer), count)


def _window_log_probs(model: nn.Module, row: torch.Tensor) -> torch.Tensor:
    """Next-token log-probabilities at every predicted position of one window: (length - 1, vocab)."""
    return F.log_softmax(model(row[None])[0, :-1].float(), dim=-1)


@torch.no_grad()
def log_probs(model: nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Per window, log-probabilities of the next token at every predicted position: (length - 1, vocab)."""
    return [_window_log_probs(model, row) for row in ids]


def perplexity(ids: torch.Tensor, log_probabilities: list[torch.Tensor]) -> float:
    """exp(mean next-token NLL) from log_probs(model, ids), without running the model again."""
    nll = -sum(logp.gather(-1, row[1:, None]).sum().item() for row, logp in zip(ids, log_probabilities, strict=True))
    return math.exp(nll / sum(row.numel() - 1 for row in ids))


@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, baseline: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Perplexity on `ids`, and the KL from `baseline` log-probabilities when given (one window at a time)."""
    nll, kl, count = 0.0, 0.0, 0
    for index, row in enumerate(ids):
        logp = _window_log_probs(model, row)  # (T-1, vocab)
        nll -= logp.gather(-1, row[1:, None]).sum().item()
        if baseline is not None:
            ref = baseline[index].float()
            kl += (ref.exp() * (ref - logp)).sum().item()
        count += row.numel() - 1
    result = {"ppl": math.exp(nll / count), "tokens": count}
    if baseline is not None:
        result["kl"] = kl / count
    return result

