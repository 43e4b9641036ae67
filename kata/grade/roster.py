"""A class roster: who is graded, from which repository, at which ref; and one shard of it.

名单：GitHub Classroom 导出的作业成绩表（含 student_repository_url 一列），或每行 `学生,仓库地址或路径[,ref]`
的简单 CSV（可以有表头 student,repository,ref）。--shard i/N 只取第 i 份（按名单顺序轮流分），
各份合并后与一次全部评分相同。
Two formats: GitHub Classroom's assignment export (a CSV with `student_repository_url`, and `github_username` or
`roster_identifier` for the student), or plain lines `student,repository-url-or-path[,ref]` (a header
`student,repository,ref` is allowed; `#` starts a comment). Students are unique; shards take every N-th student in
roster order, so N shards together are the whole class exactly once.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Student:
    name: str
    repository: str  # a URL or a local path
    ref: str = ""  # a commit, tag or branch that pins the submission (else the deadline, else the head)


def _classroom(rows: list[dict[str, str]]) -> list[Student]:
    students = []
    for row in rows:
        name = row.get("github_username") or row.get("roster_identifier") or row.get("student") or ""
        url = row.get("student_repository_url", "").strip()
        if name.strip() and url:
            students.append(Student(name.strip(), url))
    return students


def parse_roster(text: str) -> list[Student]:
    """The students of a roster's text (either format); a ValueError naming the line for anything else."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if lines and "student_repository_url" in lines[0]:
        return _unique(_classroom(list(csv.DictReader(io.StringIO("\n".join(lines))))))
    if lines and [c.strip().lower() for c in next(csv.reader([lines[0]]))][:2] == ["student", "repository"]:
        lines = lines[1:]
    students = []
    for number, row in enumerate(csv.reader(lines), 1):
        cells = [c.strip() for c in row]
        if len(cells) not in (2, 3) or not all(cells[:2]):
            raise ValueError(f"名单第 {number} 行应为 student,repository[,ref] / roster line {number} should be "
                             f"student,repository[,ref]: {','.join(row)!r}")
        students.append(Student(*cells))
    return _unique(students)


def _unique(students: list[Student]) -> list[Student]:
    seen: set[str] = set()
    for student in students:
        if student.name in seen:
            raise ValueError(f"名单里学生重复 / a student is listed twice: {student.name!r}")
        seen.add(student.name)
    return students


def read_roster(path: Path) -> list[Student]:
    return parse_roster(path.read_text(encoding="utf-8-sig"))


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' → (i, N), 1 ≤ i ≤ N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise ValueError(f"--shard 应为 i/N，1 ≤ i ≤ N / --shard must be i/N with 1 ≤ i ≤ N, got {text!r}")
    return index, count


def shard(students: list[Student], index: int, count: int) -> list[Student]:
    """The index-th of `count` shards: every count-th student in roster order, starting at index − 1."""
    return students[index - 1::count]
