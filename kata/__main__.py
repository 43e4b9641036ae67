"""Command line: `python -m kata hint ex2_1`, `python -m kata list`. 命令行：查看提示与课程表。"""

from __future__ import annotations

import argparse
import sys

from kata.harness.curriculum import EXERCISES, find
from kata.harness.progress import pad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata", description="提示与课程表 / hints and curriculum")
    sub = parser.add_subparsers(dest="command", required=True)
    hint = sub.add_parser("hint", help="一个练习的提示 / hints for one exercise")
    hint.add_argument("exercise", help="例如 / e.g. ex2_1")
    sub.add_parser("list", help="课程表 / the curriculum")
    args = parser.parse_args(argv)

    if args.command == "list":
        for ex in EXERCISES:
            print(f"{ex.id:<7} {pad(ex.chapter, 14)} {pad(f'exercises/{ex.module}.py', 37)} {ex.title}")
        return 0
    try:
        ex = find(args.exercise)
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    print(f"{ex.id} — {ex.title}  (exercises/{ex.module}.py)")
    for number, (zh, en) in enumerate(ex.hints, 1):
        print(f"  {number}. {zh}\n     {en}")
    print(f"  自测 / check: pytest {ex.test_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
