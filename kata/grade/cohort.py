"""Grading a whole class: a roster in, a gradebook out (`python -m kata.grade --roster FILE`).

全班评分：按名单逐个取学员仓库（截止时间、ref、令牌见 kata/grade/fetch.py），把所有（学员 × 练习）放进一个受 CPU 核数与
内存限制的池子里同时评（每个都在自己的沙箱里），一条进度行；每个学员写自己的 results.json / junit.xml / summary.md，
全班写 gradebook.csv 与 summary.md（kata/grade/gradebook.py）。取不到的仓库也有一行，写明原因，从不打断全班。
Every (student, exercise) pair that the cache (kata/grade/gradebook.py) does not already hold is one job for one
pool bounded by the cores and the memory (an exercise may need about 4 GiB), each job graded exactly as one fork's
exercise is (kata/grade/run.py: its own grading tree, its own sandbox, threads divided among the jobs side by
side). When a student's last job finishes, their own results.json / junit.xml / summary.md and their record are
written; the class's gradebook.csv and summary.md are made from the records at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kata.grade import gradebook, tamper
from kata.grade.fetch import Checkout, fetch
from kata.grade.fingerprint import fingerprints
from kata.grade.results import ExerciseResult, junit_xml, results_json, summary_markdown
from kata.grade.roster import Student
from kata.grade.run import Options, run_exercise
from kata.harness.curriculum import Exercise
from kata.harness.target import ROOT

GIB_PER_JOB = 4  # the real-model tests hold the model a few times over


@dataclass
class Submission:
    index: int  # position in the roster
    student: Student
    checkout: Checkout
    results: dict[str, ExerciseResult] = field(default_factory=dict)


def slots(jobs: int) -> tuple[int, int]:
    """(jobs side by side, threads each): bounded by the cores and by the memory at GIB_PER_JOB a job."""
    cores = os.cpu_count() or 1
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = GIB_PER_JOB * cores
    side_by_side = max(1, min(cores, jobs, int(memory_gib // GIB_PER_JOB)))
    return side_by_side, max(1, cores // side_by_side)


def folder_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", student) or "_"


def fetch_all(students: list[tuple[int, Student]], repos: Path, deadline: dt.datetime | None) -> list[Submission]:
    """Each student's checkout (a local folder that is not a git repository is graded as it stands)."""
    subs = []
    for index, student in students:
        dest = repos / folder_name(student.name)
        shutil.rmtree(dest, ignore_errors=True)  # a run killed mid-clone leaves half a clone
        source = Path(student.repository)
        if source.is_dir() and not (source / ".git").exists():
            checkout = Checkout(source.resolve(), "—")
        else:
            checkout = fetch(student.repository, dest, student.ref, deadline)
        subs.append(Submission(index, student, checkout))
        print(f"  取 / fetched {student.name}: {checkout.commit[:12] or checkout.error}", flush=True)
    return subs


def finish(sub: Submission, out: Path, exercises: list[Exercise], root: Path) -> None:
    """A student's own results.json / junit.xml / summary.md, and their record for the gradebook."""
    results = [sub.results[ex.id] for ex in exercises if ex.id in sub.results]
    changes = tamper.fork_changes(sub.checkout.path, root) if sub.checkout.path else []
    mine = out / "students" / folder_name(sub.student.name)
    if sub.checkout.path:
        gradebook.write_atomically(mine / "results.json", json.dumps(results_json(results, "exercises", None, changes),
                                                                     ensure_ascii=False, indent=2))
        gradebook.write_atomically(mine / "summary.md", summary_markdown(results, "exercises", changes))
        mine.mkdir(parents=True, exist_ok=True)
        junit_xml(results).write(mine / "junit.xml", encoding="utf-8", xml_declaration=True)
    prints = {}
    for ex in exercises:
        try:
            answer = tamper.answer_bytes(sub.checkout.path, f"exercises/{ex.module}.py") if sub.checkout.path else None
        except OSError:
            answer = None
        if answer is not None:
            stub = (root / "exercises" / f"{ex.module}.py").read_text(encoding="utf-8")
            prints[ex.id] = sorted(fingerprints(answer.decode("utf-8", errors="replace"), stub))
    row = gradebook.row(sub.student.name, sub.student.repository, sub.checkout, results, changes)
    gradebook.write_record(out, sub.index, row, prints)


def grade_class(students: list[tuple[int, Student]], out: Path, exercises: list[Exercise], options: Options,
                deadline: dt.datetime | None = None, root: Path = ROOT) -> list[dict]:
    """Grade every (index, student) of a roster (or of one shard of it) into `out`; returns the records."""
    started = time.perf_counter()
    subs = fetch_all(students, out / "repos", deadline)
    upstream, settings = gradebook.upstream_digest(root), json.dumps(asdict(options), sort_keys=True)
    jobs = []
    for sub in subs:
        for ex in exercises if sub.checkout.path else ():
            key = gradebook.cache_key(sub.checkout.commit, upstream, settings, ex)
            result = gradebook.cached(out, key)
            if result is None:
                jobs.append((sub, ex, key))
            else:
                sub.results[ex.id] = result
    jobs.sort(key=lambda job: not job[1].heavy)  # the long runs first (longest processing time first)
    side_by_side, threads = slots(len(jobs))
    print(f"班级 / class: {len(subs)} students, {len(jobs)} exercise runs to do ({side_by_side} side by side)",
          flush=True)
    pending = {id(sub): sum(1 for job in jobs if job[0] is sub) for sub in subs}
    for sub in subs:
        if not pending[id(sub)]:
            finish(sub, out, exercises, root)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=side_by_side) as pool:
        futures = {pool.submit(run_exercise, ex, "exercises", Path(tmp) / str(sub.index), options, root,
                               sub.checkout.path, threads): (sub, ex, key) for sub, ex, key in jobs}
        for done, future in enumerate(as_completed(futures), 1):
            sub, ex, key = futures[future]
            sub.results[ex.id] = future.result()
            gradebook.store(out, key, sub.results[ex.id])
            pending[id(sub)] -= 1
            if not pending[id(sub)]:
                finish(sub, out, exercises, root)
            print(f"\r  {done}/{len(jobs)} exercise runs, {time.perf_counter() - started:.0f} s", end="", flush=True)
    print()
    return gradebook.records(out)
