"""Helpers for the kata's own tests: run pytest or a module in a fresh interpreter, load a file as a module."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from kata.harness.target import ROOT


def run_python(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300):
    """`python *args` in `cwd`; returns the CompletedProcess with stdout and stderr as text."""
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    full_env.pop("KATA_TARGET", None)  # each test says which target it wants
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def load_file(path: Path, name: str) -> ModuleType:
    """Import a file under a private name, so stubs and references can sit side by side."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def copy_checkout(dest: Path) -> Path:
    """A fork as a learner would have it: every file of this checkout but caches and environments."""
    from kata.grade.tamper import tree_files

    for rel, path in tree_files(ROOT).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / rel)
    return dest


def grade_fork(fork: Path, out: Path, *args: str, env: dict | None = None, timeout: float = 600):
    """Grade `fork`'s answers with this checkout's grader, as the workflow does (python -I, from upstream)."""
    return run_python("-I", "-m", "kata.grade", "--answers", str(fork), "--out", str(out), *args, env=env,
                      timeout=timeout)


def copy_kata(dest: Path) -> Path:
    """A throw-away copy of the kata (support code, exercises, reference, pytest config) to break on purpose."""
    for name in ("kata", "exercises", "reference"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    return dest
