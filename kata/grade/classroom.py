"""GitHub Classroom's autograding reporter format, written from a fork's results (`--classroom`).

GitHub Classroom 的评分报告格式：classroom-resources/autograding-grading-reporter 从环境变量 <RUNNER>_RESULTS 读一段
base64 编码的 JSON，需要 max_score，并把每个测试的数字 score 加起来，写进名为 "Autograding Tests" 的检查。
这些分数只是给学员的反馈：记入成绩的应是老师一方运行 --roster 得到的成绩簿。
The reporter reads `<RUNNER>_RESULTS` (base64 of this JSON), needs `max_score`, sums every test's numeric `score`,
and sets the check run named exactly "Autograding Tests" (its workflow needs `checks: write`). The points are the
learner's feedback; the grade to record is the instructor-side run's gradebook.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path


def reporter_json(results: dict) -> dict:
    """The reporter's shape from results.json (exercism v3 plus quant_kata): version, status, max_score, tests with
    name, status, score, message."""
    kata = results.get("quant_kata", {})
    tests = [{"name": t["name"], "status": t["status"], "score": t.get("score", 0.0),
              "message": t.get("message") or "", "test_code": t.get("test_code", ""), "filename": "", "line_no": 0}
             for t in results.get("tests", [])]
    return {"version": 1, "status": results.get("status", "error"), "max_score": kata.get("max_score", 0),
            "tests": tests}


def write(out: Path, results: dict) -> str:
    """classroom.json under `out`, and the base64 the reporter reads; appended as `result=…` to $GITHUB_OUTPUT
    when a workflow step runs this. Returns the base64."""
    data = reporter_json(results)
    (out / "classroom.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    encoded = base64.b64encode(json.dumps(data, ensure_ascii=False).encode()).decode()
    github_output = os.environ.get("GITHUB_OUTPUT")
    if github_output:
        with open(github_output, "a", encoding="utf-8") as f:
            f.write(f"result={encoded}\n")
    return encoded
