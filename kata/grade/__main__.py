"""Command line of the grader: `python -m kata.grade` (kata/grade/run.py says what grading one fork does,
kata/grade/cohort.py a whole class).

评分命令行 / usage:
    python -m kata.grade [--answers FORK] [--only ex2_1,ex5_6] [--out DIR] [--classroom]   # one fork
    python -m kata.grade --roster roster.csv [--deadline 2026-12-20T23:59+08:00] [--shard 1/4] --out DIR  # a class
    python -m kata.grade --merge shard1/ shard2/ --out DIR      # the shards' gradebooks as one
    python -m kata.grade --unsolved                              # every graded test fails on the stubs
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

from kata.grade import classroom, sandbox
from kata.grade.cohort import grade_class
from kata.grade.fetch import parse_deadline
from kata.grade.gradebook import records, write_class
from kata.grade.results import results_json
from kata.grade.roster import parse_shard, read_roster, shard
from kata.grade.run import DEFAULT_MEMORY_GIB, DEFAULT_TIMEOUT_S, Options, grade, run_all
from kata.harness import target
from kata.harness.curriculum import EXERCISES, Exercise, find
from kata.harness.target import ROOT


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kata.grade",
                                     description="quant-kata 评分 / grade a checkout's exercises")
    parser.add_argument("--target", default=None,
                        help="评哪个目录 / which folder to grade: exercises (default) or reference; also $KATA_TARGET")
    parser.add_argument("--out", type=Path, default=Path("grade-results"))
    parser.add_argument("--only", default="", help="逗号分隔的练习 / comma-separated exercise ids")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="每个练习的秒数 / s per exercise")
    parser.add_argument("--answers", type=Path, default=None,
                        help="取答案的检出目录（学员的 fork）/ the checkout (a learner's fork) to take answers from")
    parser.add_argument("--memory-gib", type=float, default=DEFAULT_MEMORY_GIB,
                        help=f"每个练习的内存上限 / address-space limit per exercise (default {DEFAULT_MEMORY_GIB})")
    parser.add_argument("--unsandboxed", action="store_true",
                        help="没有沙箱也评分（答案能碰到评分器能碰到的一切）/ grade even where no sandbox can be "
                             "made (the answers can then reach whatever the grader can)")
    parser.add_argument("--skip-scan", action="store_true",
                        help="不做答案扫描，只用于测试其他防线 / no answer scan: only for testing the other defences")
    parser.add_argument("--unsolved", action="store_true",
                        help="检查每个评分测试在原始存根上都失败 / check every graded test fails on the stubs")
    parser.add_argument("--roster", type=Path, default=None,
                        help="全班名单（GitHub Classroom 导出或 student,repository[,ref]）/ a class roster (GitHub "
                             "Classroom's export, or lines student,repository[,ref]): grade every fork")
    parser.add_argument("--deadline", default=None,
                        help="截止时间（ISO 8601，不写时区即 UTC）：评每个仓库截止前最后一个提交 / grade each "
                             "repository's last commit at or before this time (ISO 8601; UTC without a zone)")
    parser.add_argument("--shard", default="", help="i/N：只评名单的第 i 份 / grade only shard i of N of the roster")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="把各分片的输出目录合并成一个成绩簿 / merge the shards' output folders into one gradebook")
    parser.add_argument("--classroom", action="store_true",
                        help="另写 GitHub Classroom 评分报告的格式 / also write GitHub Classroom's reporter format")
    return parser


def missing_dependencies(exercises: list[Exercise]) -> list[str]:
    """What the graded tests need and this Python lacks (the grader refuses before it scores anything)."""
    needed = ["torch", "pytest", "hypothesis", "numpy", "gguf", "tokenizers"]
    if any(ex.id == "ex5_10" for ex in exercises):
        needed.append("triton")
    return [name for name in needed if importlib.util.find_spec(name) is None]


def unsolved(exercises: list[Exercise], options: Options) -> int:
    """Grade this checkout's untouched stubs: 0 when every graded test fails on them, else 1 with the exceptions."""
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(exercises, "exercises", Path(tmp), options)
    passing = [f"{r.exercise.test_file}::{t.name}" for r in results for t in r.tests if t.status == "pass"]
    total = sum(len(r.tests) for r in results)
    if passing:
        print(f"这些评分测试在存根上通过了 / these graded tests PASS on the stubs ({len(passing)}/{total}):")
        print("\n".join(f"  {name}" for name in passing))
        return 1
    print(f"好 / good: 全部 {total} 个评分测试在存根上都失败 / all {total} graded tests fail on the stubs "
          f"({len(results)} exercises)")
    return 0


def refuse(out: Path, target_name: str, no_sandbox: str) -> int:
    """No sandbox and no --unsandboxed: say why, write the refusal as results.json, exit 2."""
    print(f"拒绝评分 / refusing to grade: {no_sandbox}\n没有沙箱时答案能读到参考答案、改写结果；只在可信的机器上、"
          "确需评分时加 --unsandboxed（沙箱与内存上限只在 Linux 上有）/ without a sandbox an answer can read the "
          "reference and rewrite results; on a trusted machine pass --unsandboxed to grade anyway (the sandbox and "
          "the memory limit exist on Linux only; kata/grade/sandbox.py says what the sandbox needs)", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    refusal = results_json([], target_name, f"refused: no sandbox: {no_sandbox}", no_sandbox=no_sandbox)
    (out / "results.json").write_text(json.dumps(refusal, ensure_ascii=False, indent=2), encoding="utf-8")
    return 2


def grade_roster(args: argparse.Namespace, exercises: list[Exercise], options: Options) -> int:
    """--roster: every student (of one shard), the records, gradebook.csv and summary.md under --out."""
    students = list(enumerate(read_roster(args.roster)))
    if args.shard:
        index, count = parse_shard(args.shard)
        students = shard(students, index, count)
    deadline = parse_deadline(args.deadline) if args.deadline else None
    recs = grade_class(students, args.out, exercises, options, deadline)
    mine = {i for i, _ in students}
    write_class(args.out, [r for r in recs if r["index"] in mine], exercises)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"写入 / wrote {args.out}/gradebook.csv, summary.md, students/*/results.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.target = target.resolve(args.target, default="exercises")
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    exercises = [find(name) for name in args.only.split(",") if name] or list(EXERCISES)
    if args.merge:
        write_class(args.out, records(*args.merge), exercises)
        print(f"写入 / wrote {args.out}/gradebook.csv, summary.md ({len(records(*args.merge))} students)")
        return 0
    missing = missing_dependencies(exercises)
    if missing:
        print(f"拒绝评分：缺少 / refusing to grade: this Python lacks {', '.join(missing)} — pip install -e "
              "\".[kernel]\" in the grader's environment", file=sys.stderr)
        return 2
    no_sandbox = sandbox.problem()
    options = Options(args.timeout, args.memory_gib, sandboxed=no_sandbox is None, scan=not args.skip_scan)
    if args.unsolved:  # the untouched stubs are this checkout's own code: a sandbox where there is one
        return unsolved(exercises, options)
    if no_sandbox and args.target == "exercises" and not args.unsandboxed:
        return refuse(args.out, args.target, no_sandbox)
    if args.roster is not None:
        return grade_roster(args, exercises, options)
    answers = args.answers.resolve() if args.answers else None
    if answers is not None and not (answers / "exercises").is_dir():
        parser().error(f"--answers 应是含 exercises/ 的检出 / --answers must be a checkout with exercises/: {answers}")
    data = grade(args.target, args.out, exercises, options, ROOT, answers, no_sandbox)
    if args.classroom:
        classroom.write(args.out, data)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"写入 / wrote {args.out}/results.json, junit.xml, summary.md — status {data['status']}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
