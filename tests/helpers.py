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


FORK_SERVER = """
import os
import sys

import hypothesis  # noqa: F401  (imported once here: each run is a fork of this process)
import pytest
import torch  # noqa: F401

for line in sys.stdin:
    cwd, out, *args = line.rstrip("\\n").split("\\t")
    pid = os.fork()
    if pid == 0:
        output = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.chdir(cwd)
        code = pytest.main(args)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class PytestForks:
    """pytest runs in fresh forks of one process that imported torch, pytest and hypothesis once: a plain
    `python -m pytest` spends most of its seconds importing them. One run at a time."""

    def __init__(self, scratch: Path, threads: int | None = None) -> None:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("KATA_TARGET", None)
        if threads is not None:  # servers side by side: torch's threads each, so that they do not fight over cores
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.scratch, self.runs = scratch, 0
        self.process = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, text=True)

    def run(self, cwd: Path, *args: str) -> subprocess.CompletedProcess:
        """`pytest *args` in `cwd`, as run_python would give it (stdout and stderr together, as text)."""
        self.runs += 1
        out = self.scratch / f"run{self.runs}.txt"
        self.process.stdin.write("\t".join([str(cwd), str(out), *args]) + "\n")
        self.process.stdin.flush()
        code = int(self.process.stdout.readline())
        return subprocess.CompletedProcess(args, code, out.read_text(encoding="utf-8", errors="replace"), "")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


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
    """Grade `fork`'s answers with this checkout's grader, as the workflow does (python -I, from upstream); where no
    sandbox can be made, --unsandboxed (the results say so)."""
    from kata.grade import sandbox

    unsandboxed = ["--unsandboxed"] if sandbox.problem() else []
    return run_python("-I", "-m", "kata.grade", "--answers", str(fork), "--out", str(out), *args, *unsandboxed,
                      env=env, timeout=timeout)


def copy_kata(dest: Path) -> Path:
    """A throw-away copy of the kata (support code, exercises, reference, pytest config) to break on purpose."""
    for name in ("kata", "exercises", "reference"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)
    return dest
