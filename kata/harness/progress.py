"""Progress per exercise from test outcomes, and the bilingual table the learner sees.

进度：根据每个测试的结果判断练习是 已完成 / 未通过 / 未开始，并给出下一个练习的提示。
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kata.harness.curriculum import EXERCISES, Exercise

DONE, FAILING, NOT_STARTED, UNAVAILABLE, REFUSED = "done", "failing", "not started", "needs an install", "refused"
LABELS = {DONE: "✔ 已完成 done", FAILING: "✘ 未通过 failing", NOT_STARTED: "· 未开始 not started",
          UNAVAILABLE: "○ 缺依赖 needs install", REFUSED: "🚫 违反规则 refused"}


@dataclass
class Outcomes:
    passed: int = 0
    failed: int = 0  # failed for a real reason: the learner's code ran and was wrong
    not_started: int = 0  # failed with the stub's own NotImplementedError: untouched
    slow_skipped: int = 0  # real-model tests left out (run them with --slow)
    first_failure: str | None = None  # the name of the first test that failed for a real reason
    unavailable: str = ""  # why the test module could not even be collected (a package it needs is missing)
    refused: tuple[str, ...] = ()  # the answer scan's findings (kata/harness/scan.py): a grade would be zero

    @property
    def status(self) -> str:
        if self.unavailable:
            return UNAVAILABLE
        if self.refused:
            return REFUSED
        if self.failed == 0 and self.not_started == 0:
            return DONE
        if self.passed == 0 and self.failed == 0:
            return NOT_STARTED
        return FAILING


def display_width(text: str) -> int:
    """Terminal columns `text` takes: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int) -> str:
    """Left-justify by display width."""
    return text + " " * max(0, width - display_width(text))


def exercise_statuses(outcomes: Mapping[str, Outcomes]) -> list[tuple[Exercise, Outcomes]]:
    """The exercises that ran, in curriculum order, with their outcomes."""
    return [(ex, outcomes[ex.module]) for ex in EXERCISES if ex.module in outcomes]


def render(rows: Iterable[tuple[Exercise, Outcomes]], target: str) -> list[str]:
    rows = list(rows)
    lines = [f"quant-kata 进度 / progress — target: {target}"]
    for ex, out in rows:
        total = out.passed + out.failed + out.not_started
        pending = f"  (+{out.slow_skipped} 真实模型未运行 / real-model not run)" if out.slow_skipped else ""
        pending += f"  — {out.unavailable}" if out.unavailable else ""
        lines.append(f"  {pad(LABELS[out.status], 20)} {ex.id:<6} {pad(ex.chapter, 14)} {out.passed:>2}/{total:<3} "
                     f"{ex.title}{pending}")
        lines += [f"      {finding}" for finding in out.refused]
    done = sum(out.status == DONE for _, out in rows)
    lines.append(f"完成 / done: {done}/{len(rows)}")
    slow = sum(out.slow_skipped for _, out in rows)
    if slow:
        lines.append(f"跳过了 {slow} 个真实模型测试 / {slow} real-model tests skipped — 运行它们 / run them: "
                     "pytest exercises --slow")
    upcoming = next(((ex, out) for ex, out in rows if out.status in (REFUSED, FAILING, NOT_STARTED)), None)
    ran = {ex.id for ex, _ in rows}
    last = max((EXERCISES.index(ex) for ex, _ in rows), default=-1)
    after_last = [ex for ex in EXERCISES[last + 1:] + EXERCISES[:last + 1] if ex.id not in ran]
    not_run = after_last[0] if after_last else None  # the next exercise after those run, wrapping around
    if upcoming is not None and upcoming[1].refused:
        ex, out = upcoming
        lines += [f"下一步 / next: {ex.id} ({ex.module}.py) — 评分时这个答案不会运行、记零分：改掉上面列出的地方 / "
                  "a grade would not run this answer and score it zero: change what is listed above",
                  f"  规则 / the rules: python -m kata rules {ex.id}"]
    elif upcoming is not None:
        ex, out = upcoming
        zh, en = ex.hint_for(out.first_failure)  # the hint about the test that failed, where one is keyed
        lines += [
            f"下一步 / next: {ex.id} ({ex.module}.py) — {ex.title}",
            f"  提示 / hint: {zh}",
            f"               {en}",
            f"  更多提示 / more hints: python -m kata hint {ex.id}",
        ]
    elif not_run is not None:
        lines += [
            "本次运行的练习都通过了 / every exercise in this run passes.",
            f"下一个 / next: {not_run.id} ({not_run.module}.py) — {not_run.title}",
            f"  pytest {not_run.test_file}",
        ]
    else:
        lines.append("全部通过，干得好！ / All passing — well done!")
    return lines
