"""Grade results: per-test outcomes read from JUnit XML, and the three files a grade is written as.

评分结果：从 JUnit XML 读出每个测试的结果，写成 results.json（exercism v3）、junit.xml 与 summary.md。
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from kata.grade.sandbox import DESCRIPTION
from kata.harness import syntax
from kata.harness.curriculum import BY_ID, Exercise


@dataclass
class CaseResult:
    name: str
    status: str  # "pass" | "fail" | "error", as in exercism's v3 results
    message: str | None = None
    test_code: str = ""
    bad_input: bool = False  # marked pytest.mark.bad_input upstream: pays only as far as the value tests pass
    module: str = ""  # the test module's dotted name (JUnit's classname without the class)


@dataclass
class ExerciseResult:
    exercise: Exercise
    tests: list[CaseResult] = field(default_factory=list)
    junit: ET.Element | None = None
    forgery: list[str] = field(default_factory=list)  # why this exercise earns nothing, whatever its tests say
    similarity: float | None = None  # to the reference solution (kata/grade/similarity.py); never changes points

    @property
    def passed(self) -> int:
        return 0 if self.forgery else sum(t.status == "pass" for t in self.tests)

    def scores(self) -> list[float]:
        """Each test's points: an equal share of the exercise's, a value test's for passing; a bad-input test's
        share is scaled by the fraction of value tests that pass (refusing bad input earns nothing alone)."""
        if not self.tests or self.forgery:
            return [0.0] * len(self.tests)
        share = self.exercise.points / len(self.tests)
        values = [t.status == "pass" for t in self.tests if not t.bad_input]
        fraction = sum(values) / len(values) if values else 1.0
        return [share * (fraction if t.bad_input else 1.0) if t.status == "pass" else 0.0 for t in self.tests]

    @property
    def points(self) -> float:
        return round(sum(self.scores()), 1)

    def to_dict(self) -> dict:
        """Plain data for the class grader's cache (kata/grade/gradebook.py); from_dict reads it back."""
        junit = None if self.junit is None else ET.tostring(self.junit, encoding="unicode")
        return {"exercise": self.exercise.id, "tests": [vars(t) for t in self.tests], "junit": junit,
                "forgery": self.forgery, "similarity": self.similarity}

    @classmethod
    def from_dict(cls, data: dict) -> ExerciseResult:
        junit = None if data["junit"] is None else ET.fromstring(data["junit"])
        return cls(BY_ID[data["exercise"]], [CaseResult(**t) for t in data["tests"]], junit, data["forgery"],
                   data["similarity"])


def test_sources(test_file: Path) -> dict[str, str]:
    """Source of each top-level test function, for the v3 `test_code` field (empty if unparsable)."""
    try:
        text = test_file.read_text(encoding="utf-8")
        tree = syntax.parse(text)
    except (OSError, SyntaxError, ValueError):
        return {}
    return {node.name: ast.get_source_segment(text, node) or "" for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def bad_input_tests(test_file: Path) -> frozenset[str]:
    """The test functions of an upstream test module marked @pytest.mark.bad_input (read from its source, never
    from the run)."""
    try:
        tree = syntax.parse(test_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    return frozenset(node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                     and any(ast.unparse(d) == "pytest.mark.bad_input" for d in node.decorator_list))


def skip_reasons(*files: Path) -> frozenset[str]:
    """Every string constant of the upstream test module and the kata's plugin: the only reasons a graded test may
    be skipped for (no GPU, no --slow, a package missing). A skip for any other reason is the answer's doing."""
    reasons = set()
    for file in files:
        try:
            tree = syntax.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        reasons |= {node.value for node in ast.walk(tree)
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    return frozenset(reasons)


def parse_junit(path: Path, sources: dict[str, str], allowed_skips: frozenset[str],
                bad_inputs: frozenset[str] = frozenset()) -> tuple[list[CaseResult], ET.Element | None]:
    """Each test case's verdict; a skip for one of allowed_skips neither earns nor costs points, any other skip
    counts as a failure. Tests named in bad_inputs are marked as such."""
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
        skipped = case.find("skipped")
        if skipped is not None:
            reason = skipped.get("message") or ""
            if reason in allowed_skips:
                continue  # the harness's own skip (GPU-only, a missing package)
            status, message = "fail", f"被跳过，不算通过 / a skip the harness did not ask for is a failure: {reason}"
        function = name.split("[", 1)[0]
        results.append(CaseResult(name, status, message, sources.get(function, ""), function in bad_inputs,
                                  case.get("classname", "")))
    return results, root


def _sandbox_line(no_sandbox: str | None) -> str:
    return DESCRIPTION if no_sandbox is None else f"没有沙箱 / no sandbox: {no_sandbox}"


def results_json(results: list[ExerciseResult], target: str, error: str | None = None,
                 changes: list[str] = (), no_sandbox: str | None = None) -> dict:
    """exercism test-runner v3 results, plus a `quant_kata` block with the points per exercise and whether the
    answers ran in a sandbox (`no_sandbox`: why not)."""
    tests = [{"name": f"{r.exercise.id}::{t.name}", "status": t.status, "message": t.message, "output": None,
              "test_code": t.test_code, "task_id": task_id, "score": round(score, 4),
              "max_score": round(r.exercise.points / len(r.tests), 4), "bad_input": t.bad_input}
             for task_id, r in enumerate(results, 1) for t, score in zip(r.tests, r.scores(), strict=True)]
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
            "sandbox": {"used": no_sandbox is None, "detail": _sandbox_line(no_sandbox)},
            "exercises": [{"id": r.exercise.id, "task_id": task_id, "module": r.exercise.module,
                           "passed": r.passed, "total": len(r.tests), "points": r.points,
                           "max_points": r.exercise.points, "forgery": r.forgery,
                           "similarity_to_reference": r.similarity}
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


def summary_markdown(results: list[ExerciseResult], target: str, changes: list[str],
                     no_sandbox: str | None = None) -> str:
    icon = {True: "✅", False: "❌"}
    lines = [f"## quant-kata 评分 / grade — target `{target}`", "",
             f"{'沙箱 / sandbox' if no_sandbox is None else '> ⚠️'}: {_sandbox_line(no_sandbox)}", ""]
    if changes:
        lines += ["> ⚠️ 答案以外被改动的文件，评分时一律用上游的版本 / files changed outside the answers; grading "
                  "used upstream's versions (M changed, A added, D removed):", ">",
                  *[f"> - `{change}`" for change in changes], ""]
    lines += ["| | 练习 exercise | 章节 chapter | 通过 passed | 分数 points | 与参考答案相似 / like the reference |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in results:
        done = bool(r.tests) and r.passed == len(r.tests)
        like = "—" if r.similarity is None else f"{r.similarity:.2f}"
        lines.append(f"| {'🚫' if r.forgery else icon[done]} | {r.exercise.id} {r.exercise.title} | "
                     f"{r.exercise.chapter} | {r.passed}/{len(r.tests)} | {r.points:g}/{r.exercise.points} | {like} |")
    forged = [r for r in results if r.forgery]
    if forged:
        lines += ["", "🚫 **记零分，请老师审阅 / scored zero, for the instructor's review:**", ""]
        lines += [f"- {r.exercise.id} (`exercises/{r.exercise.module}.py`): {finding}"
                  for r in forged for finding in r.forgery]
    score, top = sum(r.points for r in results), sum(r.exercise.points for r in results)
    lines += ["", f"**总分 / total: {score:g} / {top}**"]
    if any(r.similarity is not None for r in results):
        lines += ["", "相似度：逐函数比较编译后的指令与公开参考答案（改名、调换顺序、加死代码的抄袭也 ≥ 0.9，"
                  "存根 ≤ 0.15，独立写的答案 ≤ 0.4），不影响分数，供老师参考 / similarity: each function's compiled "
                  "instructions against the public reference (a renamed, reordered or padded copy reads ≥ 0.9, the "
                  "stubs ≤ 0.15, independent answers ≤ 0.4); for the instructor's eye, it never changes points."]
    return "\n".join(lines) + "\n"
