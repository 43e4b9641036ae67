"""Grade a checkout: run each exercise's tests in its own process, score them, write the results.

评分：每个练习单独一个进程运行（语法错误、导入错误或死循环只影响这一个练习），然后写出
  results.json  — exercism test-runner v3 格式，含 task_id / exercism test-runner v3 shape with task ids
  junit.xml     — 所有练习合并的 JUnit XML / every exercise's JUnit XML, merged
  summary.md    — 适合 GitHub step summary 的 Markdown / Markdown for a GitHub step summary
The JSON is written even when the grader itself fails.

    python -m kata.grade --target exercises --out grade-results
    python -m kata.grade --unsolved        # every graded test must fail on the untouched stubs
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from kata.curriculum import EXERCISES, Exercise, find
from kata.target import ROOT

DEFAULT_TIMEOUT_S = 900


@dataclass
class CaseResult:
    name: str
    status: str  # "pass" | "fail" | "error", as in exercism's v3 results
    message: str | None = None
    test_code: str = ""


@dataclass
class ExerciseResult:
    exercise: Exercise
    tests: list[CaseResult] = field(default_factory=list)
    junit: ET.Element | None = None

    @property
    def passed(self) -> int:
        return sum(t.status == "pass" for t in self.tests)

    @property
    def points(self) -> float:
        return round(self.exercise.points * self.passed / len(self.tests), 1) if self.tests else 0.0


def _test_sources(test_file: Path) -> dict[str, str]:
    """Source of each top-level test function, for the v3 `test_code` field (empty if unparsable)."""
    try:
        text = test_file.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError, ValueError):
        return {}
    return {node.name: ast.get_source_segment(text, node) or "" for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def _parse_junit(path: Path, sources: dict[str, str]) -> tuple[list[CaseResult], ET.Element | None]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return [], None
    results = []
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        status, message = "pass", None
        for tag, verdict in (("failure", "fail"), ("error", "error")):
            node = case.find(tag)
            if node is not None:
                status, message = verdict, (node.get("message") or node.text or "").strip()[:2000]
        if case.find("skipped") is not None:
            continue  # a skipped test (e.g. GPU-only) neither earns nor costs points
        results.append(CaseResult(name, status, message, sources.get(name.split("[", 1)[0], "")))
    return results, root


def run_exercise(ex: Exercise, target: str, workdir: Path, timeout_s: float, root: Path = ROOT) -> ExerciseResult:
    """Run one exercise's tests in a fresh interpreter; a crash or hang costs only this exercise."""
    xml = workdir / f"junit-{ex.id}.xml"
    cmd = [sys.executable, "-m", "pytest", ex.test_file, f"--target={target}", "--slow", "-q", "--no-header",
           "-p", "no:cacheprovider", f"--junitxml={xml}", "-o", "junit_suite_name=" + ex.id]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = ExerciseResult(ex)
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        result.tests = [CaseResult(ex.id, "error", f"超时 / timed out after {timeout_s:g} s")]
        return result
    result.tests, result.junit = _parse_junit(xml, _test_sources(root / ex.test_file))
    if not result.tests:
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        message = f"测试没有运行 / tests did not run (exit {proc.returncode}):\n{tail}"
        result.tests = [CaseResult(ex.id, "error", message)]
    return result


def run_all(exercises: list[Exercise], target: str, workdir: Path, timeout_s: float,
            root: Path = ROOT) -> list[ExerciseResult]:
    """Every exercise in its own process, a line printed as each one finishes; results in curriculum order."""
    started = time.perf_counter()
    print(f"评分 {len(exercises)} 个练习 / grading {len(exercises)} exercises (target {target}) …", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures = {pool.submit(run_exercise, ex, target, workdir, timeout_s, root): ex for ex in exercises}
        for future in as_completed(futures):
            r = future.result()
            print(f"  {r.exercise.id:<6} {r.passed:>3}/{len(r.tests):<3} {r.points:g}/{r.exercise.points} points  "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        return [future.result() for future in futures]


def results_json(results: list[ExerciseResult], target: str, error: str | None = None) -> dict:
    """exercism test-runner v3 results, plus a `quant_kata` block with the points per exercise."""
    tests = [{"name": f"{r.exercise.id}::{t.name}", "status": t.status, "message": t.message, "output": None,
              "test_code": t.test_code, "task_id": task_id}
             for task_id, r in enumerate(results, 1) for t in r.tests]
    if error is not None:
        status = "error"
    else:
        status = "pass" if tests and all(t["status"] == "pass" for t in tests) else "fail"
    return {
        "version": 3,
        "status": status,
        "message": error,
        "tests": tests,
        "quant_kata": {
            "target": target,
            "score": round(sum(r.points for r in results), 1),
            "max_score": sum(r.exercise.points for r in results),
            "exercises": [{"id": r.exercise.id, "task_id": task_id, "module": r.exercise.module,
                           "passed": r.passed, "total": len(r.tests), "points": r.points,
                           "max_points": r.exercise.points} for task_id, r in enumerate(results, 1)],
        },
    }


def junit_xml(results: list[ExerciseResult]) -> ET.ElementTree:
    merged = ET.Element("testsuites", name="quant-kata")
    for r in results:
        suites = [] if r.junit is None else list(r.junit.iter("testsuite"))
        if suites:
            merged.extend(suites)
            continue
        suite = ET.SubElement(merged, "testsuite", name=r.exercise.id, tests="1", errors="1", failures="0")
        case = ET.SubElement(suite, "testcase", classname=r.exercise.module, name=r.exercise.id)
        ET.SubElement(case, "error", message=(r.tests[0].message or "")[:500] if r.tests else "")
    return ET.ElementTree(merged)


def summary_markdown(results: list[ExerciseResult], target: str, edited: list[str]) -> str:
    icon = {True: "✅", False: "❌"}
    lines = [f"## quant-kata 评分 / grade — target `{target}`", ""]
    if edited:
        lines += ["> ⚠️ 这些测试或评分文件被修改过，评分前已从上游恢复 / these test or harness files were edited "
                  "and were restored from upstream before grading:", ">",
                  *[f"> - `{path}`" for path in edited], ""]
    lines += ["| | 练习 exercise | 章节 chapter | 通过 passed | 分数 points |", "| --- | --- | --- | ---: | ---: |"]
    for r in results:
        done = bool(r.tests) and r.passed == len(r.tests)
        lines.append(f"| {icon[done]} | {r.exercise.id} {r.exercise.title} | {r.exercise.chapter} | "
                     f"{r.passed}/{len(r.tests)} | {r.points:g}/{r.exercise.points} |")
    score, top = sum(r.points for r in results), sum(r.exercise.points for r in results)
    lines += ["", f"**总分 / total: {score:g} / {top}**"]
    return "\n".join(lines) + "\n"


def grade(target: str, out: Path, exercises: list[Exercise], timeout_s: float, edited: list[str],
          root: Path = ROOT) -> dict:
    """Run, score and write results.json, junit.xml and summary.md under `out`; always writes the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    results: list[ExerciseResult] = []
    error = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_all(exercises, target, Path(tmp), timeout_s, root)
        junit_xml(results).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)
        (out / "summary.md").write_text(summary_markdown(results, target, edited), encoding="utf-8")
    except Exception as err:  # the JSON must still say what happened
        error = f"评分器出错 / the grader failed: {type(err).__name__}: {err}"
        raise
    finally:
        data = results_json(results, target, error)
        (out / "results.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("exercises", "reference"), default="exercises")
    parser.add_argument("--out", type=Path, default=Path("grade-results"))
    parser.add_argument("--only", default="", help="逗号分隔的练习 / comma-separated exercise ids")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="每个练习的秒数 / s per exercise")
    parser.add_argument("--edited", default="", help="被修改过的测试文件（空格分隔）/ edited test files")
    parser.add_argument("--unsolved", action="store_true",
                        help="检查每个评分测试在原始存根上都失败 / check every graded test fails on the stubs")
    args = parser.parse_args(argv)
    exercises = [find(name) for name in args.only.split(",") if name] or list(EXERCISES)

    if args.unsolved:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_all(exercises, "exercises", Path(tmp), args.timeout)
        passing = [f"{r.exercise.test_file}::{t.name}" for r in results for t in r.tests if t.status == "pass"]
        total = sum(len(r.tests) for r in results)
        if passing:
            print(f"这些评分测试在存根上通过了 / these graded tests PASS on the stubs ({len(passing)}/{total}):")
            print("\n".join(f"  {name}" for name in passing))
            return 1
        print(f"好 / good: 全部 {total} 个评分测试在存根上都失败 / all {total} graded tests fail on the stubs "
              f"({len(results)} exercises)")
        return 0

    data = grade(args.target, args.out, exercises, args.timeout, args.edited.split())
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"写入 / wrote {args.out}/results.json, junit.xml, summary.md — status {data['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
