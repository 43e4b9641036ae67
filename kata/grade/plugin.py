"""The grader's pytest plugin, loaded with `-p kata.grade.plugin` by kata/grade/run.py on top of the learner's.

评分用的 pytest 插件：只由评分器加载（学员的插件从不导入它）。--answers-in-worker 让每个答案模块只在 worker 进程
里运行（kata/grade/boundary.py），--sandbox 让 worker 运行在沙箱里（kata/grade/sandbox.py）；calls_to 在 worker 里计数。
With --answers-in-worker, importing `exercises.exN_*` gives a module of proxies of a worker process's answer;
the learner's harness is told so (its stash keys SPIES and ANSWERS_ELSEWHERE): it then scans and wraps nothing here,
and its calls_to fixture counts in the workers.
"""

from __future__ import annotations

import sys

import pytest

from kata.grade.finder import WorkerFinder
from kata.harness import target
from kata.harness.plugin import ANSWERS_ELSEWHERE, SPIES


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("quant-kata grading")
    group.addoption("--answers-in-worker", action="store_true", default=False,
                    help="评分用：答案只在 worker 进程里运行 / grading: the answer runs only in a worker process "
                         "(kata/grade/boundary.py)")
    group.addoption("--sandbox", action="store_true", default=False,
                    help="评分用：worker 运行在沙箱里 / grading: each worker runs in a sandbox (kata/grade/sandbox.py)")


@pytest.hookimpl(trylast=True)  # after the learner's plugin has chosen the target
def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("answers_in_worker"):
        return
    if target.resolve(config.getoption("target")) != "exercises":
        raise pytest.UsageError("--answers-in-worker 只用于 --target exercises / only with --target exercises")
    finder = WorkerFinder(str(target.ROOT), sandboxed=config.getoption("sandbox"))
    sys.meta_path.insert(0, finder)
    config.add_cleanup(finder.close)
    config.stash[SPIES] = finder.spy
    config.stash[ANSWERS_ELSEWHERE] = True
