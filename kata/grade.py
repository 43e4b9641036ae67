"""Grade a checkout: run each exercise's tests in its own process, score them, write the results.

评分：每个练习单独一个进程、单独一份评分目录（语法错误、导入错误、死循环、崩溃、占满内存、删文件都只影响
这一个练习），然后写出
  results.json  — exercism test-runner v3 格式，含 task_id / exercism test-runner v3 shape with task ids
  junit.xml     — 所有练习合并的 JUnit XML / every exercise's JUnit XML, merged
  summary.md    — 适合 GitHub step summary 的 Markdown / Markdown for a GitHub step summary
The JSON is written even when the grader itself fails.

    python -m kata.grade                                   # this checkout's exercises/
    python -m kata.grade --answers ../fork --out results   # a fork's answers, graded against this kata
    python -m kata.grade --unsolved                        # every graded test must fail on the untouched stubs

Only the answers count (see kata/tamper.py): each exercise runs in a fresh copy of this kata's files with the
answer modules copied in, under `python -I` (no PYTHON* variables, no user site, no working-directory imports),
with pytest told its configuration file (-c), no conftest.py (--noconftest), no plugin autoloading, only the
kata's plugin, a clean environment, an empty working directory and limits on memory, file size and time.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from kata import tamper
from kata.curriculum import EXERCISES, Exercise, find
from kata.target import ROOT

DEFAULT_TIMEOUT_S = 900
DEFAULT_MEMORY_GIB = 12  # address space per exercise; the real-model tests need about 4
FILE_LIMIT_BYTES = 1 << 30  # no single file (captured output, XML) may grow past 1 GiB
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "KATA_CACHE", "CUDA_VISIBLE_DEVICES")
# Runs pytest from the grading tree: sys.path[0] is that tree, so `kata` and `exercises` are its copies.
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv.pop(1)); import pytest; sys.exit(pytest.main(sys.argv[1:]))"


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
    forgery: list[str] = field(default_factory=list)  # why this exercise earns nothing, whatever its tests say

    @property
    def passed(self) -> int:
        return 0 if self.forgery else sum(t.status == "pass" for t in self.tests)

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
            if node is not None:  # the one-line message, then the end of the report (where the error is named)
                head, body = (node.get("message") or "").strip(), (node.text or "").strip()
                status, message = verdict, (head + ("\n" + body[-1500:] if body and body != head else ""))[:2000]
        if case.find("skipped") is not None:
            continue  # a skipped test (e.g. GPU-only) neither earns nor costs points
        results.append(CaseResult(name, status, message, sources.get(name.split("[", 1)[0], "")))
    return results, root


def _limits(memory_gib: float):
    """Resource limits for the child, set between fork and exec (POSIX)."""
    def apply() -> None:
        import resource

        memory = int(memory_gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))
    return apply if os.name == "posix" else None


def _tail(path: Path, size: int = 1500) -> str:
    """The last `size` characters of a file that may be huge."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4 * size))
        return f.read().decode("utf-8", "replace").strip()[-size:]


def run_exercise(ex: Exercise, target: str, workdir: Path, timeout_s: float, root: Path = ROOT,
                 answers: Path | None = None, memory_gib: float = DEFAULT_MEMORY_GIB) -> ExerciseResult:
    """Run one exercise's tests in a fresh interpreter and a fresh copy of the kata (`root`) holding the answer
    modules of `answers` (default: root's own); a crash, hang or vandalism costs only this exercise."""
    result = ExerciseResult(ex)
    answers = answers or root
    answer = answers / "exercises" / f"{ex.module}.py"
    if target == "exercises" and answer.is_file():
        result.forgery = tamper.scan_answer(answer.read_text(encoding="utf-8", errors="replace"))
        if result.forgery:  # never run code that tries to forge its grade
            result.tests = [CaseResult(ex.id, "error", "未运行，疑似伪造成绩 / not run, looks like grade forgery: "
                                       + "; ".join(result.forgery))]
            return result
    tree, scratch = workdir / f"tree-{ex.id}", workdir / f"cwd-{ex.id}"
    scratch.mkdir(parents=True)
    expected = tamper.build_grading_tree(root, answers, tree, solutions=target == "reference")
    xml, output = workdir / f"junit-{ex.id}.xml", workdir / f"output-{ex.id}.txt"
    cmd = [sys.executable, "-I", "-c", BOOTSTRAP, str(tree), str(tree / ex.test_file),
           "-c", str(tree / "pyproject.toml"), "--rootdir", str(tree), "--noconftest", "-p", "kata.plugin",
           f"--target={target}", "--slow", "-q", "--no-header", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "-o", "junit_suite_name=" + ex.id]
    env = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONHASHSEED="0")
    with output.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_limits(memory_gib))
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: children of the tests too
            proc.wait()
            result.tests = [CaseResult(ex.id, "error", f"超时 / timed out after {timeout_s:g} s")]
    if not result.tests:
        result.tests, result.junit = _parse_junit(xml, _test_sources(tree / ex.test_file))
    if not result.tests:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        result.tests = [CaseResult(ex.id, "error", f"测试没有运行 / tests did not run ({how}):\n{_tail(output)}")]
    result.forgery = [f"运行后 / after the run: {change}" for change in tamper.changed_files(tree, expected)]
    return result


def run_all(exercises: list[Exercise], target: str, workdir: Path, timeout_s: float, root: Path = ROOT,
            answers: Path | None = None, memory_gib: float = DEFAULT_MEMORY_GIB) -> list[ExerciseResult]:
    """Every exercise in its own process, a line printed as each one finishes; results in curriculum order."""
    started = time.perf_counter()
    print(f"评分 {len(exercises)} 个练习 / grading {len(exercises)} exercises (target {target}) …", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures = {pool.submit(run_exercise, ex, target, workdir, timeout_s, root, answers, memory_gib): ex
                   for ex in exercises}
        for future in as_completed(futures):
            r = future.result()
            flag = "  ⚠️ " + r.forgery[0] if r.forgery else ""
            print(f"  {r.exercise.id:<6} {r.passed:>3}/{len(r.tests):<3} {r.points:g}/{r.exercise.points} points  "
                  f"({time.perf_counter() - started:.0f} s){flag}", flush=True)
        return [future.result() for future in futures]


def results_json(results: list[ExerciseResult], target: str, error: str | None = None,
                 changes: list[str] = ()) -> dict:
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
            "changed_outside_answers": list(changes),
            "exercises": [{"id": r.exercise.id, "task_id": task_id, "module": r.exercise.module,
                           "passed": r.passed, "total": len(r.tests), "points": r.points,
                           "max_points": r.exercise.points, "forgery": r.forgery}
                          for task_id, r in enumerate(results, 1)],
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


def summary_markdown(results: list[ExerciseResult], target: str, changes: list[str]) -> str:
    icon = {True: "✅", False: "❌"}
    lines = [f"## quant-kata 评分 / grade — target `{target}`", ""]
    if changes:
        lines += ["> ⚠️ 答案以外被改动的文件，评分时一律用上游的版本 / files changed outside the answers; grading "
                  "used upstream's versions (M changed, A added, D removed):", ">",
                  *[f"> - `{change}`" for change in changes], ""]
    lines += ["| | 练习 exercise | 章节 chapter | 通过 passed | 分数 points |", "| --- | --- | --- | ---: | ---: |"]
    for r in results:
        done = bool(r.tests) and r.passed == len(r.tests)
        lines.append(f"| {'🚫' if r.forgery else icon[done]} | {r.exercise.id} {r.exercise.title} | "
                     f"{r.exercise.chapter} | {r.passed}/{len(r.tests)} | {r.points:g}/{r.exercise.points} |")
    forged = [r for r in results if r.forgery]
    if forged:
        lines += ["", "🚫 **记零分，请老师审阅 / scored zero, for the instructor's review:**", ""]
        lines += [f"- {r.exercise.id} (`exercises/{r.exercise.module}.py`): {finding}"
                  for r in forged for finding in r.forgery]
    score, top = sum(r.points for r in results), sum(r.exercise.points for r in results)
    lines += ["", f"**总分 / total: {score:g} / {top}**"]
    return "\n".join(lines) + "\n"


def grade(target: str, out: Path, exercises: list[Exercise], timeout_s: float, root: Path = ROOT,
          answers: Path | None = None, memory_gib: float = DEFAULT_MEMORY_GIB) -> dict:
    """Run, score and write results.json, junit.xml and summary.md under `out`; always writes the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    results: list[ExerciseResult] = []
    error = None
    changes = tamper.fork_changes(answers, root) if answers is not None else []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_all(exercises, target, Path(tmp), timeout_s, root, answers, memory_gib)
        junit_xml(results).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)
        (out / "summary.md").write_text(summary_markdown(results, target, changes), encoding="utf-8")
    except Exception as err:  # the JSON must still say what happened
        error = f"评分器出错 / the grader failed: {type(err).__name__}: {err}"
        raise
    finally:
        data = results_json(results, target, error, changes)
        (out / "results.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("exercises", "reference"), default="exercises")
    parser.add_argument("--out", type=Path, default=Path("grade-results"))
    parser.add_argument("--only", default="", help="逗号分隔的练习 / comma-separated exercise ids")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="每个练习的秒数 / s per exercise")
    parser.add_argument("--answers", type=Path, default=None,
                        help="取答案的检出目录（学员的 fork）/ the checkout (a learner's fork) to take answers from")
    parser.add_argument("--memory-gib", type=float, default=DEFAULT_MEMORY_GIB,
                        help=f"每个练习的内存上限 / address-space limit per exercise (default {DEFAULT_MEMORY_GIB})")
    parser.add_argument("--unsolved", action="store_true",
                        help="检查每个评分测试在原始存根上都失败 / check every graded test fails on the stubs")
    args = parser.parse_args(argv)
    exercises = [find(name) for name in args.only.split(",") if name] or list(EXERCISES)

    if args.unsolved:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_all(exercises, "exercises", Path(tmp), args.timeout, memory_gib=args.memory_gib)
        passing = [f"{r.exercise.test_file}::{t.name}" for r in results for t in r.tests if t.status == "pass"]
        total = sum(len(r.tests) for r in results)
        if passing:
            print(f"这些评分测试在存根上通过了 / these graded tests PASS on the stubs ({len(passing)}/{total}):")
            print("\n".join(f"  {name}" for name in passing))
            return 1
        print(f"好 / good: 全部 {total} 个评分测试在存根上都失败 / all {total} graded tests fail on the stubs "
              f"({len(results)} exercises)")
        return 0

    answers = args.answers.resolve() if args.answers else None
    if answers is not None and not (answers / "exercises").is_dir():
        parser.error(f"--answers 应是含 exercises/ 的检出 / --answers must be a checkout with exercises/: {answers}")
    data = grade(args.target, args.out, exercises, args.timeout, ROOT, answers, args.memory_gib)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    print(f"写入 / wrote {args.out}/results.json, junit.xml, summary.md — status {data['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
