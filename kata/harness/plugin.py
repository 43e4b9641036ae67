"""pytest plugin: target switch, origin guard, short "not started" reports, the answer rules, the progress table.

pytest 插件：切换测试目标、检查模块来源、把存根的 NotImplementedError 显示为“未开始”、扫描答案是否守规则
（kata/harness/scan.py，和评分用的是同一个扫描）、对“怎么做的”有要求的练习在调用周围检查（kata/harness/watch.py）、
真实模型测试默认跳过（--slow 才运行）、结束时打印进度表与实测数字。Real-model tests (marker "slow") run only with
--slow; what they measured is printed at the end, pass or fail. The grader adds its own plugin (kata/grade/plugin.py)
on top of this one; this one never imports it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from kata.harness import progress, target, watch
from kata.harness import spy as spies
from kata.harness.curriculum import BY_MODULE, EXERCISES
from kata.harness.dot_rule import nvidia_dot_rule
from kata.harness.scan import scan_answer_file

_TARGET = pytest.StashKey[str]()
# Set by the grader's plugin when the answers run elsewhere (a worker): how calls_to counts there, and that the
# answer modules seen here are proxies (nothing to wrap or scan in this process).
SPIES = pytest.StashKey[object]()  # (dotted, finalizer) → a counter
ANSWERS_ELSEWHERE = pytest.StashKey[bool]()

# Property tests (hypothesis) draw the same examples on every run and machine: a grade must not depend on luck.
settings.register_profile("kata", derandomize=True, database=None, deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kata")
# The same examples without shrinking a failure to its smallest form (`--hypothesis-profile kata-no-shrink`): for
# runs that only ask whether a test fails, such as the trivial-answer family (tests/test_trivial.py).
settings.register_profile("kata-no-shrink", settings.get_profile("kata"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("quant-kata").addoption(
        "--target",
        default=None,
        help="测试哪个目录 / which folder the exercise tests import: exercises (default) or reference; "
        f"also ${target.ENV_VAR}",
    )
    parser.getgroup("quant-kata").addoption(
        "--slow", action="store_true", default=False,
        help="也运行真实模型的测试（每个约 1 分钟）/ also run the real-model tests (about a minute each)",
    )


def pytest_configure(config: pytest.Config) -> None:
    try:
        chosen = target.resolve(config.getoption("target"))
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[_TARGET] = chosen
    target.install(chosen)
    if not _cuda_available():  # Triton kernels (5.10) then run in Triton's CPU interpreter, under a GPU's rules
        os.environ.setdefault("TRITON_INTERPRET", "1")
        nvidia_dot_rule()
    config.pluginmanager.register(_ProgressRecorder(chosen), "quant-kata-progress")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_report_header(config: pytest.Config) -> str:
    chosen = config.stash[_TARGET]
    return f"quant-kata target: {chosen} ({target.folder(chosen)})"


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> None:
    """Before an exercise's test module imports it: the learner's own run watches the calls its checks of "how"
    watch (the grader's worker does that where the answers run instead)."""
    ex = BY_MODULE.get(module_path.stem.removeprefix("test_"))
    if ex is None or not ex.how or parent.config.stash.get(ANSWERS_ELSEWHERE, False):
        return
    try:
        module = importlib.import_module(f"exercises.{ex.module}")
    except Exception:
        return  # the test module's own import reports it
    watch.install(module, ex.how)


def pytest_collection_finish(session: pytest.Session) -> None:
    chosen = session.config.stash[_TARGET]
    wrong = target.wrong_origins(chosen)
    if wrong:
        pytest.exit(
            f"目标不一致 / target mismatch: chose {chosen!r} but imported\n  " + "\n  ".join(wrong),
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    if not session.config.stash.get(ANSWERS_ELSEWHERE, False):  # the grader scans before it runs anything
        recorder = session.config.pluginmanager.get_plugin("quant-kata-progress")
        for module in {_exercise_module(item.nodeid) for item in session.items} - {None}:
            answer = target.folder(chosen) / f"{module}.py"
            if answer.is_file():
                recorder.refused[module] = tuple(scan_answer_file(answer, BY_MODULE[module]))


SLOW_SKIP_REASON = "真实模型测试，加 --slow 运行 / real-model test: run with --slow"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if not config.pluginmanager.has_plugin("randomly"):  # a learner's run goes in the chapter's order
        order = {f"test_{ex.module}": index for index, ex in enumerate(EXERCISES)}
        items.sort(key=lambda item: order.get(item.path.stem, len(order)))
    no_gpu = pytest.mark.skip(reason="没有 CUDA GPU / no CUDA GPU")
    not_slow = pytest.mark.skip(reason=SLOW_SKIP_REASON)
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "slow" in item.keywords and not config.getoption("slow"):
            item.add_marker(not_slow)


def _exercise_module(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    if path.startswith("exercises/test_") and path.endswith(".py"):
        return path[len("exercises/test_") : -len(".py")]
    return None


def _stub_that_raised(excinfo: pytest.ExceptionInfo) -> str | None:
    """The exercise module whose stub raised `NotImplementedError("... kata hint ...")`, or None — say, for torch's
    NotImplementedError about a kernel this device lacks, which is a real failure with its traceback."""
    where = Path(str(excinfo.traceback[-1].path))
    if (excinfo.errisinstance(NotImplementedError) and "kata hint" in str(excinfo.value)
            and where.parent.name in target.TARGETS and where.name.startswith("ex")):
        return where.stem
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    stub = None if call.excinfo is None else _stub_that_raised(call.excinfo)
    if stub is not None and stub == _exercise_module(item.nodeid):
        report.longrepr = f"未开始 / not started: {call.excinfo.value}"
        report.user_properties.append(("not_started", True))
    elif stub is not None:  # this exercise's code called another exercise that is still a stub
        report.longrepr = (f"这个练习调用了还没完成的 {stub}：先完成它，或改用 kata.oracles 的积木 / this exercise "
                           f"calls {stub}, which is still a stub: solve it first, or use the building blocks in "
                           f"kata.oracles ({call.excinfo.value})")
    return report


class _ProgressRecorder:
    """Counts outcomes per exercise module and prints the progress table at the end."""

    def __init__(self, chosen: str) -> None:
        self.target = chosen
        self.outcomes: dict[str, progress.Outcomes] = {}
        self.measured: list[str] = []  # what real-model tests measured, pass or fail
        self.refused: dict[str, tuple[str, ...]] = {}  # the answer scan's findings by module

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.measured += [f"{value} — {report.outcome}" for key, value in report.user_properties
                              if key == "measured"]
        module = _exercise_module(report.nodeid)
        if module is None or (report.when != "call" and report.passed):
            return
        outcomes = self.outcomes.setdefault(module, progress.Outcomes())
        if report.skipped:
            outcomes.slow_skipped += SLOW_SKIP_REASON in str(report.longrepr)
        elif report.passed:
            outcomes.passed += 1
        elif dict(report.user_properties).get("not_started"):
            outcomes.not_started += 1
        else:
            outcomes.failed += 1
            outcomes.first_failure = outcomes.first_failure or report.nodeid.split("::", 1)[-1]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A test file that cannot even be imported (say, a syntax error in the exercise) is failing; one skipped
        whole at import (pytest.importorskip: a package it needs is missing) still shows, with the reason."""
        module = _exercise_module(report.nodeid)
        if module is not None and report.failed:
            self.outcomes.setdefault(module, progress.Outcomes()).failed += 1
        elif module is not None and report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.outcomes.setdefault(module, progress.Outcomes()).unavailable = reason.removeprefix("Skipped: ")

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter):
        """Print the progress table last. Untouched stubs are summarised there instead of one failure section
        each: they leave the "failed" list while the summaries print and rejoin it for the final count."""
        failed = terminalreporter.stats.get("failed", [])
        not_started = [r for r in failed if dict(r.user_properties).get("not_started")]
        if not_started:
            terminalreporter.stats["failed"] = [r for r in failed if r not in not_started]
        try:
            yield
        finally:
            if not_started:
                terminalreporter.stats["failed"] = failed
        for module, findings in self.refused.items():
            if findings and module in self.outcomes:
                self.outcomes[module].refused = findings
        rows = progress.exercise_statuses(self.outcomes)
        if self.measured:
            terminalreporter.section("实测 / measured", sep="-")
            for line in self.measured:
                terminalreporter.write_line(f"  {line}")
        if rows:
            terminalreporter.section("quant-kata", sep="=")
            for line in progress.render(rows, self.target):
                terminalreporter.write_line(line)
            if not_started:
                terminalreporter.write_line(f"({len(not_started)} 个测试未开始，未逐条列出 / tests not started, "
                                            "not listed one by one)")


@pytest.fixture
def smollm2():
    """A fresh copy of the real model (SmolLM2-135M-Instruct, float32); the file is read once per process."""
    from kata.smollm2 import load_model

    return load_model()


@pytest.fixture(scope="session")
def smollm2_reference():
    """Evaluation windows for the exercises' real-model tests (the first 2 of the protocol: 1,022 predicted tokens,
    enough for the KL ratios they check, which have wide margins) and the baseline's log-probabilities."""
    from kata.evaluate import eval_windows, log_probs
    from kata.smollm2 import load_model

    ids = eval_windows(2)
    return ids, log_probs(load_model(), ids)


@pytest.fixture
def calls_to(request: pytest.FixtureRequest):
    """calls_to("torch.name") or calls_to("module.Class.method") → a counter (len() says how often) of the calls to
    that function from now until the test ends; calls_to("aten.op") records each call of that aten op at the
    dispatcher, its operands and result (calls[i].args, calls[i].result). Where the grader runs the answer in a
    worker, it counts there. 统计答案在本测试中调用某个函数或 aten 算子的次数（及其操作数）。"""
    elsewhere = request.config.stash.get(SPIES, None)

    def start(dotted: str):
        if elsewhere is not None:
            return elsewhere(dotted, request.addfinalizer)
        counter = spies.spy(dotted)
        if isinstance(counter, spies.OpSpy):
            counter.__enter__()
            request.addfinalizer(lambda: counter.__exit__(None, None, None))
        else:
            request.addfinalizer(counter.undo)
        return counter
    return start
