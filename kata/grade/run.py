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

The judging pytest process never imports an answer: it runs in a worker process behind proxies
(kata/grade/boundary.py), in a sandbox (kata/grade/sandbox.py) where one can be made. Only the answers count
(kata/grade/tamper.py):
each exercise runs in a fresh copy of this kata's files with the answer modules copied in, under `python -I` (no
PYTHON* variables, no user site, no working-directory imports), with pytest told its configuration file (-c), no
conftest.py (--noconftest), no plugin autoloading, only the kata's plugin, a clean environment, an empty working
directory and limits on memory, file size and time.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from kata.grade import tamper
from kata.grade.results import (
    CaseResult,
    ExerciseResult,
    bad_input_tests,
    junit_xml,
    parse_junit,
    results_json,
    skip_reasons,
    summary_markdown,
    test_sources,
)
from kata.grade.similarity import similarity
from kata.harness.curriculum import Exercise
from kata.harness.scan import scan_answer_bytes
from kata.harness.target import ROOT

DEFAULT_TIMEOUT_S = 900
DEFAULT_MEMORY_GIB = 12  # address space per exercise; the real-model tests need about 4
FILE_LIMIT_BYTES = 1 << 30  # no single file (captured output, XML) may grow past 1 GiB
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "KATA_CACHE", "KATA_CPU", "CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class Options:
    """How a grade runs: limits per exercise, and the defences (only the defences' own tests turn one off)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_gib: float = DEFAULT_MEMORY_GIB  # address space per exercise
    sandboxed: bool = True  # each answer's worker in a sandbox (kata/grade/sandbox.py)
    scan: bool = True  # the answer scan before anything runs (kata/harness/scan.py)


# Runs pytest from the grading tree: sys.path[0] is that tree, so `kata` and `exercises` are its copies.
BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv.pop(1)); import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def _limits(memory_gib: float):
    """Resource limits for the child, set between fork and exec: the address space on Linux only (macOS refuses
    RLIMIT_AS), the largest file on every POSIX system; none elsewhere."""
    def apply() -> None:
        import resource

        if sys.platform.startswith("linux"):
            memory = int(memory_gib * (1 << 30))
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))
    return apply if os.name == "posix" else None


def _tail(path: Path, size: int = 1500) -> str:
    """The last `size` characters of a file that may be huge."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4 * size))
        return f.read().decode("utf-8", "replace").strip()[-size:]


def screen_answer(ex: Exercise, answers: Path, root: Path, result: ExerciseResult, scan: bool = True) -> bool:
    """Read the answer module of `answers` as a regular file, scan it (unless `scan` is off: only the defences'
    own tests do that) and measure its similarity to the reference; False when it must not run."""
    rel = f"exercises/{ex.module}.py"
    try:
        source = tamper.answer_bytes(answers, rel)
    except OSError as error:
        result.forgery = [f"答案文件不被读取 / the answer file is not read: {error}"]
    else:
        if source is None:
            return True  # no answer: the stub is graded
        result.forgery = scan_answer_bytes(source, ex) if scan else []
        solution = root / "reference" / f"{ex.module}.py"
        if solution.is_file():
            result.similarity = similarity(source.decode("utf-8", errors="replace"),
                                           solution.read_text(encoding="utf-8"))
    if result.forgery:  # never run code that breaks the rules
        result.tests = [CaseResult(ex.id, "error", "未运行，违反答案规则 / not run, it breaks the answer rules: "
                                   + "; ".join(result.forgery))]
    return not result.forgery


def pytest_command(ex: Exercise, target: str, tree: Path, xml: Path, sandboxed: bool) -> list[str]:
    """The judging pytest run of one exercise in the grading tree: upstream's configuration and plugins only."""
    cmd = [sys.executable, "-I", "-c", BOOTSTRAP, str(tree), str(tree / ex.test_file),
           "-c", str(tree / "pyproject.toml"), "--rootdir", str(tree), "--noconftest", "-p", "kata.harness.plugin",
           "-p", "kata.grade.plugin", f"--target={target}", "--slow", "-q", "--no-header", "-p", "no:cacheprovider",
           f"--junitxml={xml}", "-o", "junit_suite_name=" + ex.id]
    if target == "exercises":
        cmd.append("--answers-in-worker")  # the answer runs only in a worker process (kata/grade/boundary.py)
        if sandboxed:
            cmd.append("--sandbox")  # … and that worker in a sandbox
    return cmd


def run_exercise(ex: Exercise, target: str, workdir: Path, options: Options, root: Path = ROOT,
                 answers: Path | None = None, threads: int | None = None) -> ExerciseResult:
    """Run one exercise's tests in a fresh interpreter and a fresh copy of the kata (`root`) holding the answer
    modules of `answers` (default: root's own); a crash, hang or vandalism costs only this exercise. The answers
    (target exercises) run in a worker process; the reference runs in the judge."""
    result = ExerciseResult(ex)
    answers = answers or root
    if target == "exercises" and not screen_answer(ex, answers, root, result, options.scan):
        return result
    tree, scratch = workdir / f"tree-{ex.id}", workdir / f"cwd-{ex.id}"
    scratch.mkdir(parents=True)
    expected = tamper.build_grading_tree(root, answers, tree, solutions=target == "reference")
    xml, output = workdir / f"junit-{ex.id}.xml", workdir / f"output-{ex.id}.txt"
    env = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONHASHSEED="0")
    if threads is not None:  # exercises side by side share the cores: more threads than cores spin and stall
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with output.open("wb") as sink:
        proc = subprocess.Popen(pytest_command(ex, target, tree, xml, options.sandboxed), cwd=scratch, env=env,
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_limits(options.memory_gib))
        try:
            proc.wait(timeout=options.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session: children of the tests too
            proc.wait()
            result.tests = [CaseResult(ex.id, "error", f"超时 / timed out after {options.timeout_s:g} s")]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind (a sandbox's namespace dies with it)
    if not result.tests:
        allowed = skip_reasons(root / ex.test_file, root / "kata/harness/plugin.py")  # upstream's, not the tree's
        result.tests, result.junit = parse_junit(xml, test_sources(tree / ex.test_file), allowed,
                                                 bad_input_tests(root / ex.test_file))
    if not result.tests:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        result.tests = [CaseResult(ex.id, "error", f"测试没有运行 / tests did not run ({how}):\n{_tail(output)}")]
    result.forgery = [f"运行后 / after the run: {change}" for change in tamper.changed_files(tree, expected)]
    return result


def heaviest_first(exercises: list[Exercise]) -> list[Exercise]:
    """The heavy exercises (the registry's `heavy`: real-model calibration) first, so that the long runs start at
    once and the short ones fill in around them (longest processing time first)."""
    return sorted(exercises, key=lambda ex: not ex.heavy)


def run_all(exercises: list[Exercise], target: str, workdir: Path, options: Options, root: Path = ROOT,
            answers: Path | None = None) -> list[ExerciseResult]:
    """Every exercise in its own process, the heaviest first, a line printed as each one finishes; results in
    curriculum order."""
    started = time.perf_counter()
    print(f"评分 {len(exercises)} 个练习 / grading {len(exercises)} exercises (target {target}) …", flush=True)
    cores = os.cpu_count() or 1
    side_by_side = max(1, min(cores, len(exercises)))
    with ThreadPoolExecutor(max_workers=side_by_side) as pool:
        futures = {ex.id: pool.submit(run_exercise, ex, target, workdir, options, root, answers,
                                      max(1, cores // side_by_side)) for ex in heaviest_first(exercises)}
        for future in as_completed(futures.values()):
            r = future.result()
            flag = "  ⚠️ " + r.forgery[0] if r.forgery else ""
            print(f"  {r.exercise.id:<6} {r.passed:>3}/{len(r.tests):<3} {r.points:g}/{r.exercise.points} points  "
                  f"({time.perf_counter() - started:.0f} s){flag}", flush=True)
        return [futures[ex.id].result() for ex in exercises]


def grade(target: str, out: Path, exercises: list[Exercise], options: Options, root: Path = ROOT,
          answers: Path | None = None, no_sandbox: str | None = None) -> dict:
    """Run, score and write results.json, junit.xml and summary.md under `out`; always writes the JSON. Where
    `no_sandbox` says why no sandbox can be made, the results say so too."""
    out.mkdir(parents=True, exist_ok=True)
    results: list[ExerciseResult] = []
    error = None
    changes = tamper.fork_changes(answers, root) if answers is not None else []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_all(exercises, target, Path(tmp), options, root, answers)
        junit_xml(results).write(out / "junit.xml", encoding="utf-8", xml_declaration=True)
        (out / "summary.md").write_text(summary_markdown(results, target, changes, no_sandbox), encoding="utf-8")
    except Exception as err:  # the JSON must still say what happened
        error = f"评分器出错 / the grader failed: {type(err).__name__}: {err}"
        raise
    finally:
        data = results_json(results, target, error, changes, no_sandbox)
        (out / "results.json").write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return data
