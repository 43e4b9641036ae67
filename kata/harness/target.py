"""The target switch: make `exercises.exN_*` imports resolve to exercises/ or reference/.

目标切换：测试文件总是 `from exercises.ex2_1_per_tensor import ...`；选 reference 时，这些导入
改由 reference/ 中同名模块提供。The test modules never change; only where the module file comes from.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("exercises", "reference")
ENV_VAR = "KATA_TARGET"
_EXERCISE_MODULE = re.compile(r"^exercises\.(ex\d+_\d+_\w+)$")


def choose(option: str | None, default: str = "exercises") -> tuple[str, str]:
    """The one target rule, for every command: (target, where it came from). The command-line option wins, then
    $KATA_TARGET, then the command's `default`; the origin is "option", "environment" or "default". A target not
    in TARGETS, or one whose folder is missing (a class copy ships without reference/), raises ValueError."""
    if option:
        target, origin = option, "option"
    elif os.environ.get(ENV_VAR):
        target, origin = os.environ[ENV_VAR], "environment"
    else:
        target, origin = default, "default"
    if target not in TARGETS:
        raise ValueError(f"目标只能是 {' 或 '.join(TARGETS)}，不是 {target!r} / the target must be one of "
                         f"{', '.join(TARGETS)}; got {target!r}")
    if not folder(target).is_dir():
        raise ValueError(f"目标 {target}：这里没有 {target}/ 文件夹（班级版不带参考答案）/ target {target}: there is "
                         f"no {target}/ folder here (a class copy of the kata ships without reference/)")
    return target, origin


def resolve(option: str | None, default: str = "exercises") -> str:
    """The chosen target: the option, else $KATA_TARGET, else `default` (see choose)."""
    return choose(option, default)[0]


def reference_if_present() -> str:
    """The lab's default target: "reference" where reference/ exists, else "exercises"."""
    return "reference" if folder("reference").is_dir() else "exercises"


def folder(target: str) -> Path:
    return ROOT / target


def exercise_module(target: str, name: str) -> ModuleType:
    """The exercise module `name` (say "ex5_6_gptq") from the target's folder, for code outside pytest (the lab)."""
    return importlib.import_module(f"{resolve(target)}.{name}")


class _ReferenceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serve `exercises.exN_*` as the module `reference.exN_*` itself (one module under two names, so that tools
    such as mutmut see the reference's own name); everything else imports as usual."""

    def find_spec(self, fullname, path=None, target=None):
        match = _EXERCISE_MODULE.match(fullname)
        if not match or not (folder("reference") / f"{match.group(1)}.py").exists():
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module("reference." + _EXERCISE_MODULE.match(spec.name).group(1))

    def exec_module(self, module):
        pass  # already executed under its own name


def install(target: str) -> None:
    """Route exercise imports to `target` for the rest of this process."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ReferenceFinder)]
    if target == "reference":
        sys.meta_path.insert(0, _ReferenceFinder())


def wrong_origins(target: str, modules: Mapping[str, ModuleType] | None = None) -> list[str]:
    """Imported exercise modules whose file is not in the target's folder (empty when all is well)."""
    modules = sys.modules if modules is None else modules
    expected = folder(target).resolve()
    wrong = []
    for name, module in list(modules.items()):
        file = getattr(module, "__file__", None)
        if _EXERCISE_MODULE.match(name) and file and Path(file).resolve().parent != expected:
            wrong.append(f"{name} ← {file}")
    return wrong
