"""Tripwires on an exercise's own job, laid in the worker before the answer is imported (kata/grade/worker.py).

绊线：在导入答案之前，把本练习“自己的工作”（登记表的 own_job，如 2.1 的 kata.oracles、5.12 的 gguf、5.10 的 torch
量化矩阵乘）下的每个函数包一层；答案运行时只要碰到其中任何一个（哪怕是经由学员 API 间接调用、或者扫描看不出的
名字），这次调用就失败，并说明碰到了什么。
The static scan (kata/harness/scan.py) sees the names an answer writes; a tripwire sees the calls it makes: each
function under an own-job symbol (a module's functions and its classes' methods; a single function or builtin) is
replaced where it lives by a wrapper that, while the answer's code runs (`armed`), notes the symbol. `check` then
fails the call with the rule's words. The judge's own callbacks run disarmed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import types
from collections.abc import Iterator


def _resolve(symbol: str) -> tuple[object, str, object] | None:
    """(owner, attribute, object) for a dotted symbol whose longest module prefix imports; None if it does not."""
    parts = symbol.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        if cut == len(parts):
            return None, "", owner
        for name in parts[cut:-1]:
            owner = getattr(owner, name, None)
        return (owner, parts[-1], getattr(owner, parts[-1], None)) if owner is not None else None
    return None


class Tripwires:
    """The wrapped functions under `symbols`, and what the answer's code reached while armed."""

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self.crossed: list[str] = []
        self.depth = 0  # > 0 while the answer's code runs
        for symbol in symbols:
            found = _resolve(symbol)
            if found is None:
                continue
            owner, name, value = found
            if isinstance(value, types.ModuleType):
                for module in [m for key, m in list(sys.modules.items()) if key == symbol or
                               key.startswith(symbol + ".")]:
                    self._lay_in_module(module)
            elif callable(value):
                self._lay(owner, name, value, symbol)

    def _lay_in_module(self, module: types.ModuleType) -> None:
        for key, value in list(vars(module).items()):
            if key.startswith("__") or getattr(value, "__module__", None) != module.__name__:
                continue
            if isinstance(value, type):
                for attr, member in list(vars(value).items()):
                    if not attr.startswith("__") and callable(getattr(value, attr, None)):
                        self._lay(value, attr, member, f"{module.__name__}.{key}.{attr}")
            elif callable(value):
                self._lay(module, key, value, f"{module.__name__}.{key}")

    def _lay(self, owner: object, name: str, member: object, symbol: str) -> None:
        kind = type(member) if isinstance(member, (classmethod, staticmethod)) else None
        function = member.__func__ if kind is not None else member
        if getattr(function, "kata_tripwire", False) or not callable(function):
            return

        @functools.wraps(function)
        def wire(*args, **kwargs):
            if self.depth:
                self.crossed.append(symbol)
            return function(*args, **kwargs)
        wire.kata_tripwire = True
        try:
            setattr(owner, name, kind(wire) if kind is not None else wire)
        except (AttributeError, TypeError):
            pass  # a slot that cannot be replaced: the scan is the rule there

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @contextlib.contextmanager
    def disarmed(self) -> Iterator[None]:
        depth, self.depth = self.depth, 0
        try:
            yield
        finally:
            self.depth = depth

    def check(self) -> None:
        """Fail with the rule's words if the answer reached its own job since the last check."""
        crossed, self.crossed = self.crossed, []
        if crossed:
            names = ", ".join(dict.fromkeys(crossed))
            raise AssertionError(f"规则 / rule: 答案调用了 {names}——这正是本练习要你自己写的 / the answer called "
                                 f"{names}, which is this exercise's own job (python -m kata rules)")

