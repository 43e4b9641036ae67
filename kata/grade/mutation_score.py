"""Mutation score per exercise, from a finished `mutmut run` over reference/ (nox -s mutation).

变异得分：mutmut 把参考答案改坏（一次改一处），再用该练习的快速测试去测；被测试抓住的比例就是得分。
mutmut mutates the solutions one change at a time and runs the fast tests against each mutant. A mutant is
killed when a test fails (or it hangs past mutmut's timeout); it survives when every test still passes; "no
tests" means no fast test calls the mutated function. Score = killed / (killed + survived + no tests).

Survivors that no test can kill are explained in kata/grade/mutation_equivalents.py (a module, a function and a
regular expression for the mutated line, with the reason): "equivalent" mutants compute the same thing, so the
second score leaves them out; "cuda" mutants change a path that only runs on a CUDA GPU and stay counted.

    python -m kata.grade.mutation_score [--min 90] [--survivors] [--out docs/mutation-score.md]
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import sys
from collections import Counter
from pathlib import Path

from kata.grade.mutation_equivalents import SURVIVORS, Survivor
from kata.harness import syntax
from kata.harness.curriculum import EXERCISES
from kata.harness.target import ROOT
from kata.report import markdown_table

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


def mutated_lines(source: str) -> dict[str, str]:
    """Mutant function name (as in mutmut's names, e.g. x_quantize__mutmut_3) → the line(s) it changed, stripped."""
    functions = {node.name: ast.get_source_segment(source, node).splitlines()
                 for node in ast.walk(syntax.parse(source)) if isinstance(node, ast.FunctionDef)}
    out = {}
    for name, lines in functions.items():
        base, _, number = name.rpartition("__mutmut_")
        if not base or number == "orig" or f"{base}__mutmut_orig" not in functions:
            continue
        original = [line.replace(f"{base}__mutmut_orig", name) for line in functions[f"{base}__mutmut_orig"]]
        added = [d[1:].strip() for d in difflib.ndiff(original, lines) if d.startswith("+ ")]
        out[name] = " ⏎ ".join(added)
    return out


def function_of(name: str) -> str:
    """mutmut's mangled name → the function it mutates: x_quantize__mutmut_3 → quantize,
    xǁW8A8Linearǁforward__mutmut_2 → W8A8Linear.forward."""
    mangled = name.rpartition(".")[2].rpartition("__mutmut_")[0]
    return mangled[2:] if mangled.startswith("x_") else ".".join(mangled.split("ǁ")[1:])


def explain(module: str, name: str, line: str, survivors: tuple[Survivor, ...] = SURVIVORS) -> Survivor | None:
    """The first explanation in kata/grade/mutation_equivalents.py that covers this surviving mutant, if any."""
    for known in survivors:
        if known.module in (module, "*") and known.function in (function_of(name), "*") \
                and re.search(known.line, line):
            return known
    return None


def outcome(exit_code: int | None) -> str:
    if exit_code is None:
        return "not run"
    return KILLED.get(exit_code) or SURVIVED.get(exit_code) or NO_TESTS.get(exit_code) or f"exit {exit_code}"


def score(codes: dict[str, int | None], equivalent: int = 0) -> tuple[Counter, float | None]:
    """Counts by outcome, and the score in % (None while no mutant of the exercise has run); `equivalent`
    survivors are left out of the total."""
    counts = Counter(outcome(code) for code in codes.values())
    killed = counts["killed"] + counts["timeout"]
    graded = killed + counts["survived"] + counts["no tests"] - equivalent
    return counts, 100.0 * killed / graded if graded else None


def exercise_row(module: str, codes: dict[str, int], mutants: Path, listing: list) -> tuple[tuple, float | None]:
    """One exercise's row of the score table, and its score without equivalents; its survivors go to `listing`
    as (kind, mutant, mutated line, reason)."""
    lines = mutated_lines((mutants / "reference" / f"{module}.py").read_text(encoding="utf-8"))
    kinds = Counter()
    for name, code in sorted(codes.items()):
        if outcome(code) in ("survived", "no tests"):
            line = lines.get(name.rpartition(".")[2], "")
            known = explain(module, name, line)
            kind = known.kind if known else "unexplained"
            kinds[kind] += 1
            listing.append((kind, name, line, known.reason if known else ""))
    counts, raw = score(codes)
    _, net = score(codes, kinds["equivalent"])
    row = (module, len(codes), counts["killed"] + counts["timeout"], counts["survived"] + counts["no tests"],
           kinds["equivalent"], kinds["cuda"], kinds["unexplained"], counts["not run"],
           "—" if raw is None else f"{raw:.1f} %", "—" if net is None else f"{net:.1f} %")
    return row, net


def write_report(table: str, out: Path) -> None:
    """The score table as docs/mutation-score.md shows it, with the versions it was measured with."""
    import platform
    from importlib.metadata import version

    import torch

    out.write_text(f"# 变异得分 / mutation score per exercise\n\n{table}\n\nmutmut {version('mutmut')}, torch "
                   f"{torch.__version__}, Python {platform.python_version()}; `nox -s mutation` "
                   f"(`python -m kata.grade.mutation_score --survivors` lists the survivors; "
                   f"kata/grade/mutation_equivalents.py says why each explained survivor cannot be killed).\n",
                   encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.grade.mutation_score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--min", type=float, default=90.0, help="每个练习的最低得分 / lowest score per exercise")
    parser.add_argument("--survivors", action="store_true", help="列出存活的变异体 / list the surviving mutants")
    parser.add_argument("--out", type=Path, default=None, help="把得分表写进这个 Markdown 文件 / write the table here")
    args = parser.parse_args(argv)
    mutants = ROOT / "mutants"
    found = results(mutants)
    if not found:
        print("没有 mutmut 结果，先运行 / no mutmut results: run `nox -s mutation` (mutmut run) first")
        return 2
    rows, low, listing = [], [], []
    for module, codes in found.items():
        row, net = exercise_row(module, codes, mutants, listing)
        rows.append(row)
        if net is not None and net < args.min:
            low.append(module)
    table = markdown_table(("exercise", "mutants", "killed", "survived", "equivalent", "CUDA only", "unexplained",
                            "not run", "score", "score without equivalents"), rows)
    print(table)
    if args.out is not None:
        write_report(table, args.out)
    if args.survivors:
        for kind, name, line, reason in sorted(listing, key=lambda item: item[0] != "unexplained"):
            print(f"  {kind:<11} {name}\n              {line}" + (f"\n              ↳ {reason}" if reason else ""))
    unexplained = sum(1 for item in listing if item[0] == "unexplained")
    print(f"未解释的存活变异体 / unexplained survivors: {unexplained}")
    if low:
        print(f"低于 / below {args.min:g} %: {', '.join(low)}")
    return 1 if low else 0

if __name__ == "__main__":
    sys.exit(main())
