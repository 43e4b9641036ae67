"""The import hook that gives a grade's judge the answer modules as proxies of worker processes.

评分时的导入钩子：`exercises.exN_*` 的每次导入都启动一个 worker（在沙箱里，如能建），评判进程拿到的是代理模块。
The grader's pytest plugin (kata/grade/plugin.py) puts WorkerFinder first on sys.meta_path: importing an exercise
module starts `worker_command(tree, name)` — python -I, the grading tree's kata first on the path, stdin / stdout
kept for the protocol (kata/grade/protocol.py) — sandboxed if asked (kata/grade/sandbox.py), and returns
remote_module (kata/grade/boundary.py). `spy` counts calls in the workers for the harness's calls_to fixture.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from kata.grade.boundary import Worker, remote_module
from kata.grade.protocol import SpyCall, SpyCount, SpyStart, SpyStop
from kata.harness.spy import OpCall

WORKER_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); from kata.grade.worker import serve; "
                    "serve(sys.argv[1], sys.argv[2])")


def worker_command(tree: str, name: str) -> list[str]:
    """The worker for exercises.<name> of the grading tree: isolated mode, the tree's kata, nothing else."""
    return [sys.executable, "-I", "-c", WORKER_BOOTSTRAP, tree, name]


class _Calls:
    """What the workers' spies saw: len() asks how many calls, [i] the i-th (an aten op's operands and result)."""

    def __init__(self, spies: list[tuple[Worker, int]]) -> None:
        self.spies = spies

    def __len__(self) -> int:
        return sum(worker.request(SpyCount(number)) for worker, number in self.spies)

    def __getitem__(self, index: int) -> OpCall | None:
        for worker, number in self.spies:
            count = worker.request(SpyCount(number))
            if index < count:
                call = worker.request(SpyCall(number, index))
                return None if call is None else OpCall(*call)
            index -= count
        raise IndexError(index)


class WorkerFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves every `exercises.exN_*` import as remote_module of a worker started for it; the judging process never
    imports the answer itself. Sandboxed, each worker runs in a sandbox of its own (kata/grade/sandbox.py) that
    sees the grading tree read-only and writes only a temporary folder."""

    def __init__(self, tree: str, sandboxed: bool = False) -> None:
        self.tree, self.sandboxed, self.workers, self.folders = tree, sandboxed, [], []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("exercises.ex"):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        command, env = worker_command(self.tree, spec.name.removeprefix("exercises.")), None
        if self.sandboxed:
            from kata.grade import sandbox
            from kata.smollm2 import cache_dir

            folder = Path(tempfile.mkdtemp(prefix="kata-worker-"))
            self.folders.append(folder)
            (folder / "root").mkdir()
            (folder / "home").mkdir()
            cache = [cache_dir()] if cache_dir().is_dir() else []  # the real model's files, read-only
            command = sandbox.wrap(command, folder / "root", [Path(self.tree), *cache], [folder / "home"],
                                   folder / "home")
            env = sandbox.environment({**os.environ, "KATA_CACHE": str(cache_dir())}, folder / "home")
        worker = Worker(command, env)
        self.workers.append(worker)
        return remote_module(spec.name, worker)

    def exec_module(self, module):
        pass  # everything is in the proxies already

    def spy(self, dotted: str, finalizer: Callable[[Callable], None]) -> _Calls:
        """Count the calls to `dotted` (torch.name) in every worker until the finalizer runs."""
        spies = [(worker, worker.request(SpyStart(dotted))) for worker in self.workers]
        finalizer(lambda: [worker.request(SpyStop(number)) for worker, number in spies])
        return _Calls(spies)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()  # a sandboxed worker's namespace dies with it, descendants included
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
