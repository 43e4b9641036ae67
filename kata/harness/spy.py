"""What the calls_to fixture counts: calls of a Python function (Spy) or of an aten op at the dispatcher (OpSpy).

计数：calls_to("torch.x") 或 calls_to("module.Class.method") 数 Python 函数被调用几次；calls_to("aten.op") 在
分派器上记下这个算子的每次调用（操作数与结果），不管答案是怎么调到它的。The learner's harness uses them in its own
process; the grader's worker (kata/grade/worker.py) uses the same classes where the answer runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class Spy:
    """Counts the calls to a Python function named by its dotted path — a module's (torch.x) or a class's
    (module.Class.method) — until undone; len() is the count."""

    def __init__(self, dotted: str) -> None:
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module
            try:
                owner = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        self.owner, self.name, self.calls = owner, parts[-1], []
        self.own = vars(owner).get(self.name, Spy)  # Spy: inherited, nothing of the owner's own to put back
        original = getattr(owner, self.name)

        def counted(*args, **kwargs):
            self.calls.append(None)
            return original(*args, **kwargs)
        setattr(owner, self.name, counted)

    def undo(self) -> None:
        if self.own is Spy:
            delattr(self.owner, self.name)
        else:
            setattr(self.owner, self.name, self.own)

    def __len__(self) -> int:
        return len(self.calls)

    def __getitem__(self, index: int):
        return self.calls[index]


@dataclass
class OpCall:
    """One call of an aten op: its positional operands and its result, copied as they were."""

    args: tuple
    result: Any


class OpSpy(TorchDispatchMode):
    """Records every call of the aten op `aten.<name>` (its operands and result) until undone, at the dispatcher:
    however the code reached it (torch.x, torch.ops.aten.x, inside another op)."""

    def __init__(self, dotted: str) -> None:
        super().__init__()
        self.op, self.calls = dotted.removeprefix("aten."), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] == self.op:
            self.calls.append(OpCall(tuple(_detached_copy(a) for a in args), _detached_copy(out)))
        return out

    def __len__(self) -> int:
        return len(self.calls)

    def __getitem__(self, index: int) -> OpCall:
        return self.calls[index]


def _detached_copy(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def spy(dotted: str) -> Spy | OpSpy:
    """calls_to's counter: `aten.<op>` records the op at the dispatcher (enter it as a mode), else a Python Spy."""
    return OpSpy(dotted) if dotted.startswith("aten.") else Spy(dotted)
