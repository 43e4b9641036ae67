"""Mutation score per exercise, from a finished `mutmut run` over reference/ (nox -s mutation).

变异得分：mutmut 把参考答案改坏（一次改一处），再用该练习的快速测试去测；被测试抓住的比例就是得分。
mutmut mutates the solutions one change at a time and runs the fast tests against each mutant. A mutant is
killed when a test fails (or it hangs past mutmut's timeout); it survives when every test still passes; "no
tests" means no fast test calls the mutated function. Score = killed / (killed + survived + no tests).

    python -m kata.mutation_score [--min 90] [--survivors] [--out docs/mutation-score.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from kata.curriculum import EXERCISES
from kata.report import markdown_table
from kata.target import ROOT

# mutmut's exit codes (mutmut.stats): a failing test (1, 3), a hang (timeouts) or a crash all catch the mutant.
KILLED = {1: "killed", 3: "killed", 37: "killed", -11: "killed", -9: "killed",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
SURVIVED = {0: "survived"}
NO_TESTS = {5: "no tests", 33: "no tests"}


def results(mutants: Path = ROOT / "mutants") -> dict[str, dict[str, int | None]]:
    """Exercise module → {mutant name: mutmut exit code (None if not run)}."""
    out = {}
    for ex in EXERCISES:
        meta = mutants / "reference" / f"{ex.module}.py.meta"
        if meta.is_file():
            out[ex.module] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return out


def outcome(exit_code: int | None) -> str:
    if exit_code is None:
        return "not run"
    return KILLED.get(exit_code) or SURVIVED.get(exit_code) or NO_TESTS.get(exit_code) or f"exit {exit_code}"


def score(codes: dict[str, int | None]) -> tuple[Counter, float | None]:
    """Counts by outcome, and the score in % (None while no mutant of the exercise has run)."""
    counts = Counter(outcome(code) for code in codes.values())
    killed = counts["killed"] + counts["timeout"]
    graded = killed + counts["survived"] + counts["no tests"]
    return counts, 100.0 * killed / graded if graded else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.mutation_score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--min", type=float, default=90.0, help="每个练习的最低得分 / lowest score per exercise")
    parser.add_argument("--survivors", action="store_true", help="列出存活的变异体 / list the surviving mutants")
    parser.add_argument("--out", type=Path, default=None, help="把得分表写进这个 Markdown 文件 / write the table here")
    args = parser.parse_args(argv)
    found = results()
    if not found:
        print("没有 mutmut 结果，先运行 / no mutmut results: run `nox -s mutation` (mutmut run) first")
        return 2
    rows, low = [], []
    for module, codes in found.items():
        counts, pct = score(codes)
        rows.append((module, len(codes), counts["killed"], counts["timeout"], counts["survived"], counts["no tests"],
                     counts["not run"], "—" if pct is None else f"{pct:.1f} %"))
        if pct is not None and pct < args.min:
            low.append(module)
    table = markdown_table(("exercise", "mutants", "killed", "timeout", "survived", "no tests", "not run", "score"),
                           rows)
    print(table)
    if args.out is not None:
        import platform
        from importlib.metadata import version

        import torch

        args.out.write_text(f"# 变异得分 / mutation score per exercise\n\n{table}\n\nmutmut {version('mutmut')}, torch "
                            f"{torch.__version__}, Python {platform.python_version()}; `nox -s mutation` "
                            f"(`python -m kata.mutation_score --survivors` lists the survivors).\n", encoding="utf-8")
    if args.survivors:
        for codes in found.values():
            for name, code in sorted(codes.items()):
                if outcome(code) in ("survived", "no tests"):
                    print(f"  {outcome(code):<9} {name}   (mutmut show {name})")
    if low:
        print(f"低于 / below {args.min:g} %: {', '.join(low)}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
