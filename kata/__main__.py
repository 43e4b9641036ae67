"""Command line: `python -m kata hint ex2_1`, `python -m kata rules ex2_1`, `python -m kata list [--markdown]`.

命令行：查看提示、一个练习的答案规则与课程表。"""

from __future__ import annotations

import argparse
import sys

from kata.harness.curriculum import (
    ANSWER_MODULES,
    BACKDOORS,
    EXERCISES,
    HOW_TEXT,
    LEARNER_API,
    Exercise,
    curriculum_table,
    find,
)
from kata.harness.progress import pad


def rules(ex: Exercise) -> list[str]:
    """What an answer to `ex` may import and use, and what is its own job (kata/harness/scan.py checks them)."""
    modules = ", ".join(sorted(m for m in ANSWER_MODULES if m != "kata"))
    lines = [f"{ex.id} — {ex.title}  (exercises/{ex.module}.py): 答案规则 / the answer's rules",
             f"  可以导入 / may import: {modules}",
             f"  kata 里只能用学员 API / of kata only the learner API: {', '.join(f'kata.{m}' for m in LEARNER_API)}"
             " (它们自己定义的名字 / the names they define)",
             f"  不能用 / may not use (后门 / doors around the rules): {', '.join(BACKDOORS)}",
             "  不能动态执行或查找 / no exec, eval, compile, vars(), globals(), getattr on a module with a computed "
             "name, dunder attributes; no writing files, no processes"]
    if ex.own_job:
        lines.append(f"  这是本练习自己的工作，不能借用 / this exercise's own job, not to be borrowed: "
                     f"{', '.join(ex.own_job)}")
    lines += [f"  怎么做也要检查 / how is checked too: {HOW_TEXT[name]}" for name in ex.how]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata", description="提示与课程表 / hints and curriculum")
    sub = parser.add_subparsers(dest="command", required=True)
    hint = sub.add_parser("hint", help="一个练习的提示 / hints for one exercise")
    hint.add_argument("exercise", help="例如 / e.g. ex2_1")
    listing = sub.add_parser("list", help="课程表 / the curriculum")
    listing.add_argument("--markdown", action="store_true", help="README 的课程表 / README's curriculum table")
    rule = sub.add_parser("rules", help="一个练习的答案规则 / what one exercise's answer may use")
    rule.add_argument("exercise", help="例如 / e.g. ex2_1")
    args = parser.parse_args(argv)

    if args.command == "list" and args.markdown:
        print(curriculum_table())
        return 0
    if args.command == "list":
        for ex in EXERCISES:
            print(f"{ex.id:<7} {pad(ex.chapter, 14)} {pad(f'exercises/{ex.module}.py', 37)} {ex.title}")
        return 0
    try:
        ex = find(args.exercise)
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    if args.command == "rules":
        print("\n".join(rules(ex)))
        return 0
    print(f"{ex.id} — {ex.title}  (exercises/{ex.module}.py)")
    for number, (zh, en) in enumerate(ex.hints, 1):
        print(f"  {number}. {zh}\n     {en}")
    print(f"  自测 / check: pytest {ex.test_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
