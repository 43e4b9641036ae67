"""A class's grades on disk: the per-exercise cache, each student's record, gradebook.csv and the class summary.

成绩簿：每个（学员提交、练习）的评分结果按键缓存（学员提交 × 上游内容 × 评分选项），原子写入；被 kill -9 打断后
重跑，已经评过的不再评，成绩簿一行不多一行不少。每个学员一条记录（成绩、迟交、标记、指纹），gradebook.csv 和班级
summary.md 都由这些记录生成；分片各自写记录，合并就是把记录放在一起。
Everything is written atomically (a temporary file, then os.replace), so a run killed at any point leaves whole
files only. A cached exercise result's key is (the fork's commit, a digest of the upstream files, the grading
options, the exercise); a student's record holds their row and answer fingerprints; gradebook.csv and summary.md
are made from the records alone, sorted by roster position — which is why N shards' records merged give the same
gradebook as one run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

from kata.grade.fingerprint import similar_pairs
from kata.grade.results import ExerciseResult
from kata.grade.tamper import tree_files
from kata.harness.curriculum import EXERCISES, Exercise

FIXED = ("student", "repository", "commit", "committed", "late")


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def upstream_digest(root: Path) -> str:
    """sha256 of every upstream file the grade reads (its path and bytes): the 'upstream commit' of a cache key,
    uncommitted changes included."""
    digest = hashlib.sha256()
    for rel, path in sorted(tree_files(root).items()):
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(fork_commit: str, upstream: str, options: str, ex: Exercise) -> str:
    return hashlib.sha256("|".join((fork_commit, upstream, options, ex.id)).encode()).hexdigest()[:32]


def cached(out: Path, key: str) -> ExerciseResult | None:
    path = out / "cache" / f"{key}.json"
    return ExerciseResult.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def store(out: Path, key: str, result: ExerciseResult) -> None:
    write_atomically(out / "cache" / f"{key}.json", json.dumps(result.to_dict(), ensure_ascii=False))


def row(student: str, repository: str, checkout, results: list[ExerciseResult], changes: list[str]) -> dict:
    """A student's gradebook row: where the answer came from, points per exercise, total, flags, similarity."""
    flags = [f"{r.exercise.id}: {r.forgery[0]}" for r in results if r.forgery]
    if changes:
        flags.append(f"{len(changes)} 个答案以外的文件被改 / files changed outside the answers")
    likeness = [r.similarity for r in results if r.similarity is not None]
    return {"student": student, "repository": repository, "commit": checkout.commit, "committed": checkout.committed,
            "late": checkout.late, "points": {r.exercise.id: r.points for r in results},
            "total": round(sum(r.points for r in results), 1), "flags": flags,
            "similarity_to_reference": round(max(likeness), 2) if likeness else None, "error": checkout.error}


def write_record(out: Path, index: int, record_row: dict, prints: dict[str, list[int]]) -> None:
    write_atomically(out / "records" / f"{index:05d}.json",
                     json.dumps({"index": index, "row": record_row, "prints": prints}, ensure_ascii=False))


def records(*outs: Path) -> list[dict]:
    """Every student's record under the given output folders (one run, or the shards of one), in roster order."""
    found = [json.loads(p.read_text(encoding="utf-8")) for out in outs for p in (out / "records").glob("*.json")]
    return sorted(found, key=lambda r: r["index"])


def gradebook_csv(rows: list[dict], exercises: list[Exercise]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*FIXED, *(ex.id for ex in exercises), "total", "flags", "similarity_to_reference", "error"])
    for r in rows:
        writer.writerow([r["student"], r["repository"], r["commit"], r["committed"], "yes" if r["late"] else "",
                         *(f"{r['points'][ex.id]:g}" if ex.id in r["points"] else "" for ex in exercises),
                         f"{r['total']:g}", " | ".join(r["flags"]),
                         "" if r["similarity_to_reference"] is None else f"{r['similarity_to_reference']:.2f}",
                         r["error"]])
    return buffer.getvalue()


def _exercise_lines(rows: list[dict], exercises: list[Exercise]) -> list[str]:
    lines = ["| 练习 exercise | 平均 mean | 满分 full | 零分 zero |", "| --- | ---: | ---: | ---: |"]
    graded = [r for r in rows if not r["error"]]
    for ex in exercises:
        points = [r["points"].get(ex.id, 0.0) for r in graded]
        mean = sum(points) / len(points) if points else 0.0
        lines.append(f"| {ex.id} {ex.title} | {mean:.1f}/{ex.points} | {sum(p == ex.points for p in points)} | "
                     f"{sum(p == 0 for p in points)} |")
    return lines


def class_summary(recs: list[dict], exercises: list[Exercise]) -> str:
    """The class's summary.md: points per exercise, who is flagged, late or not graded, the most similar pairs."""
    rows = [r["row"] for r in recs]
    lines = [f"## quant-kata 班级评分 / class grade — {len(rows)} students", "", *_exercise_lines(rows, exercises)]
    flagged = [r for r in rows if r["flags"]]
    if flagged:
        lines += ["", "🚫 **需要老师审阅 / for the instructor's review:**", ""]
        lines += [f"- {r['student']}: {flag}" for r in flagged for flag in r["flags"]]
    late = [r["student"] for r in rows if r["late"]]
    if late:
        lines += ["", f"⏰ 截止后还有提交（评的是截止前最后一个）/ commits after the deadline (the last before it "
                      f"was graded): {', '.join(late)}"]
    failed = [r for r in rows if r["error"]]
    if failed:
        lines += ["", "⚠️ 没有评分 / not graded:", "", *[f"- {r['student']}: {r['error']}" for r in failed]]
    lines += ["", "### 最相似的学员 / the most similar students (fingerprints, the stub subtracted; never changes "
                  "points)", ""]
    pairs = [(ex.id, a, b, s) for ex in exercises for a, b, s in
             similar_pairs({r["row"]["student"]: frozenset(r["prints"].get(ex.id, ())) for r in recs})]
    pairs = sorted(pairs, key=lambda p: (-p[3], p[0], p[1], p[2]))[:20]
    lines += [f"- {ex}: {a} ↔ {b} — {s:.2f}" for ex, a, b, s in pairs] or ["- 没有 / none above 0.50"]
    return "\n".join(lines) + "\n"


def write_class(out: Path, recs: list[dict], exercises: list[Exercise] = EXERCISES) -> None:
    """gradebook.csv and summary.md under `out`, from the records."""
    write_atomically(out / "gradebook.csv", gradebook_csv([r["row"] for r in recs], list(exercises)))
    write_atomically(out / "summary.md", class_summary(recs, list(exercises)))
