"""Grading a whole class (python -m kata.grade --roster): a roster of 20 local forks in, the gradebook it should be
out — the same after a kill -9 and a rerun, and the same from two shards merged.

The class of 20, graded on 1.1 and 2.1: three honest students, two partial, nine untouched stubs, two students
with the same answer (one renamed and reordered), one whose last commit came after the deadline, one pinned by the
roster to a commit before a broken one, one whose repository cannot be fetched and one holding a cheat from
tests/cheats.py.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kata.grade import classroom
from kata.grade.roster import parse_roster, shard
from kata.harness.target import ROOT
from tests.cheats import HOW_CHEATS, answer_text, disguised
from tests.helpers import copy_checkout

ONLY = "ex1_1,ex2_1"
DEADLINE = "2026-12-20T12:00:00+00:00"
REFERENCE = {m: (ROOT / "reference" / f"{m}.py").read_text(encoding="utf-8")
             for m in ("ex1_1_weight_memory", "ex2_1_per_tensor")}
STUB_1_1 = (ROOT / "exercises/ex1_1_weight_memory.py").read_text(encoding="utf-8")
VARIANTS = [  # 1.1 written four other ways: honest answers that share no code but the stub's
    STUB_1_1 + '''

def bits_per_weight(dtype, group_size=None, scale_bits=16, zero_point_bits=0):
    if dtype not in BITS:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {sorted(BITS)}")
    if group_size is None:
        return float(BITS[dtype])
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    return BITS[dtype] + (scale_bits + zero_point_bits) / group_size


def calculate_weight_memory(num_params_b, dtype, group_size=None):
    if isinstance(num_params_b, bool) or not isinstance(num_params_b, (int, float)) or num_params_b <= 0:
        raise ValueError(f"num_params_b must be positive, got {num_params_b!r}")
    return num_params_b * bits_per_weight(dtype, group_size) / 8
''',
    STUB_1_1 + '''

def _meta(group_size, scale_bits, zero_point_bits):
    if group_size is None:
        return 0.0
    ok = type(group_size) is int and group_size > 0
    if not ok:
        raise ValueError("group_size: a positive int please, not " + repr(group_size))
    return (scale_bits + zero_point_bits) / group_size


def bits_per_weight(dtype, group_size=None, scale_bits=16, zero_point_bits=0):
    try:
        base = BITS[dtype]
    except KeyError:
        raise ValueError("dtype must be one of " + ", ".join(BITS)) from None
    return float(base) + _meta(group_size, scale_bits, zero_point_bits)


def calculate_weight_memory(num_params_b, dtype, group_size=None):
    bits = bits_per_weight(dtype, group_size)
    if not (type(num_params_b) in (int, float) and num_params_b > 0):
        raise ValueError("num_params_b must be > 0")
    gigabytes = num_params_b * bits
    return gigabytes / 8
''',
    STUB_1_1 + '''

LEGAL = tuple(BITS.items())


def bits_per_weight(dtype, group_size=None, scale_bits=16, zero_point_bits=0):
    for name, width in LEGAL:
        if name == dtype:
            break
    else:
        raise ValueError("unknown dtype; the valid names are " + " ".join(name for name, _ in LEGAL))
    extra = 0.0
    if group_size is not None:
        if not (isinstance(group_size, int) and not isinstance(group_size, bool) and group_size >= 1):
            raise ValueError(f"group_size={group_size!r} is not a positive int")
        extra = (zero_point_bits + scale_bits) / group_size
    return width + extra


def calculate_weight_memory(num_params_b, dtype, group_size=None):
    if not isinstance(num_params_b, (int, float)) or isinstance(num_params_b, bool) or not num_params_b > 0:
        raise ValueError(f"num_params_b: expected > 0, got {num_params_b!r}")
    return bits_per_weight(dtype, group_size) * num_params_b / 8
''',
]


def _commit(fork: Path, when: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    subprocess.run("git add -A && git -c user.name=s -c user.email=s@example.org commit -qm work", shell=True,
                   cwd=fork, env=env, check=True)


def _fork(base: Path, name: str, answers: dict[str, str], when: str = "2026-12-19T10:00:00+00:00") -> Path:
    fork = copy_checkout(base / name)
    subprocess.run(["git", "init", "-q"], cwd=fork, check=True)
    for module, text in answers.items():
        (fork / "exercises" / f"{module}.py").write_text(text, encoding="utf-8")
    _commit(fork, when)
    return fork


def _class(base: Path) -> tuple[str, dict[str, float]]:
    """The roster's text and each student's expected total."""
    honest = {"ex1_1_weight_memory": VARIANTS[0], "ex2_1_per_tensor": REFERENCE["ex2_1_per_tensor"]}
    lines, expected = ["student,repository,ref"], {}
    for name, answers, total in (
            ("honest1", {"ex1_1_weight_memory": REFERENCE["ex1_1_weight_memory"]}, 10),
            ("honest2", honest, 20), ("honest3", {"ex1_1_weight_memory": VARIANTS[1]}, 10),
            *((f"partial{i}", {"ex2_1_per_tensor": REFERENCE["ex2_1_per_tensor"]}, 10) for i in range(2)),
            ("twin_a", {"ex1_1_weight_memory": VARIANTS[2]}, 10),
            ("twin_b", {"ex1_1_weight_memory": disguised(VARIANTS[2], keep=(
                "BITS", "bits_per_weight", "calculate_weight_memory", "dtype", "group_size", "scale_bits",
                "zero_point_bits", "num_params_b"))}, 10),
            *((f"stub{i}", {}, 0) for i in range(9)),
            ("cheat", {"ex1_1_weight_memory": answer_text(HOW_CHEATS["the reference from base64 through an exec "
                                                                    "reached by vars()"])}, 0)):
        _fork(base, name, answers)
        lines.append(f"{name},{base / name},")
        expected[name] = total
    late = _fork(base, "late", {"ex1_1_weight_memory": VARIANTS[0]})
    (late / "exercises/ex1_1_weight_memory.py").write_text(STUB_1_1, encoding="utf-8")  # broke it after the deadline
    _commit(late, "2026-12-21T09:00:00+00:00")
    lines.append(f"late,{late},")
    expected["late"] = 10
    pinned = _fork(base, "pinned", {"ex1_1_weight_memory": VARIANTS[0]})
    ref = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pinned, capture_output=True, text=True).stdout.strip()
    (pinned / "exercises/ex1_1_weight_memory.py").write_text(STUB_1_1, encoding="utf-8")
    _commit(pinned, "2026-12-19T11:00:00+00:00")  # a later commit; the roster pins the one before it
    lines.append(f"pinned,{pinned},{ref}")
    expected["pinned"] = 10
    lines.append(f"gone,{base / 'no-such-repository'},")
    expected["gone"] = 0
    return "\n".join(lines) + "\n", expected


def _grade(*args: str, wait: bool = True) -> subprocess.Popen:
    from kata.grade import sandbox

    cmd = [sys.executable, "-I", "-m", "kata.grade", "--only", ONLY, "--deadline", DEADLINE, *args,
           *(["--unsandboxed"] if sandbox.problem() else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    if wait:
        out = proc.communicate(timeout=1200)[0]
        assert proc.returncode == 0, out[-3000:]
    return proc


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    """The class graded once with a kill -9 in the middle and a rerun; then again as two shards (their own output
    folders, seeded with the first run's cache: the same keys, nothing to regrade) merged."""
    base = tmp_path_factory.mktemp("class")
    text, expected = _class(base)
    roster = base / "roster.csv"
    roster.write_text(text, encoding="utf-8")
    out = base / "out"
    proc = _grade("--roster", str(roster), "--out", str(out), wait=False)
    while len(list((out / "records").glob("*.json"))) < 3 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole grader, its exercise runs and their sandboxes
    proc.wait()
    killed_with = len(list((out / "records").glob("*.json")))
    proc = _grade("--roster", str(roster), "--out", str(out), wait=False)
    log = proc.communicate(timeout=1200)[0]
    assert proc.returncode == 0, log[-3000:]
    shards = []
    for i in (1, 2):
        part = base / f"shard{i}"
        shutil.copytree(out / "cache", part / "cache")
        _grade("--roster", str(roster), "--shard", f"{i}/2", "--out", str(part))
        shards.append(part)
    merged = base / "merged"
    _grade("--merge", *map(str, shards), "--out", str(merged))
    return {"out": out, "merged": merged, "expected": expected, "log": log, "killed_with": killed_with}


def _rows(out: Path) -> dict[str, dict[str, str]]:
    import csv

    with (out / "gradebook.csv").open(encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_every_student_has_one_row_with_the_total_their_answers_earn(graded):
    rows = _rows(graded["out"])
    assert sorted(rows) == sorted(graded["expected"]), "one row per student, none lost or doubled"
    got = {name: float(row["total"]) for name, row in rows.items()}
    assert got == graded["expected"]


def test_a_commit_after_the_deadline_is_marked_late_and_the_one_before_it_graded(graded):
    row = _rows(graded["out"])["late"]
    assert row["late"] == "yes" and row["ex1_1"] == "10" and row["committed"].startswith("2026-12-19")


def test_an_unreachable_repository_gets_a_row_that_says_why(graded):
    row = _rows(graded["out"])["gone"]
    assert "cannot fetch" in row["error"] and row["total"] == "0"


def test_the_cheat_is_flagged_and_earns_nothing(graded):
    row = _rows(graded["out"])["cheat"]
    assert row["ex1_1"] == "0" and row["flags"].startswith("ex1_1: line") and "imports base64" in row["flags"]


def test_a_renamed_and_reordered_copy_of_a_classmates_answer_is_listed_as_a_pair(graded):
    summary = (graded["out"] / "summary.md").read_text(encoding="utf-8")
    pairs = summary.split("### ")[1].splitlines()[2:]
    assert "- ex1_1: twin_a ↔ twin_b — 1.00" in pairs, pairs
    assert not [p for p in pairs if "stub" in p], "untouched stubs share nothing once the stub is subtracted"


def test_a_rerun_after_kill_9_regrades_nothing_already_graded(graded):
    assert graded["killed_with"] >= 3
    runs = int(graded["log"].split(" exercise runs to do")[0].rsplit(", ", 1)[1])
    assert runs < 2 * (len(graded["expected"]) - 1), graded["log"][:500]


def test_two_shards_merged_are_the_single_run(graded):
    assert (graded["merged"] / "gradebook.csv").read_text() == (graded["out"] / "gradebook.csv").read_text()
    assert (graded["merged"] / "summary.md").read_text() == (graded["out"] / "summary.md").read_text()


def test_each_student_gets_their_own_results_for_feedback(graded):
    results = json.loads((graded["out"] / "students/honest2/results.json").read_text(encoding="utf-8"))
    assert results["quant_kata"]["score"] == 20 and results["version"] == 3


def test_shards_cover_the_class_once():
    students = list(enumerate(parse_roster("\n".join(f"s{i},repo{i}" for i in range(7)))))
    parts = [shard(students, i, 3) for i in (1, 2, 3)]
    assert sorted(i for part in parts for i, _ in part) == list(range(7))


def test_a_classroom_roster_export_is_read():
    text = ("assignment_name,assignment_url,starter_code_url,github_username,roster_identifier,student_repository_name,"
            "student_repository_url,submission_timestamp,points_awarded,points_available\n"
            "quant,https://x,https://y,alice,Alice A,quant-alice,https://github.com/org/quant-alice,,0,190\n")
    assert [(s.name, s.repository) for s in parse_roster(text)] == [("alice", "https://github.com/org/quant-alice")]


def test_the_classroom_output_has_the_fields_the_reporter_reads(tmp_path):
    """classroom-resources/autograding-grading-reporter: results.status, results.max_score and, for each test,
    name, status, message and a numeric score, which it sums."""
    results = {"version": 3, "status": "fail", "quant_kata": {"max_score": 20},
               "tests": [{"name": "ex1_1::a", "status": "pass", "message": None, "score": 5.0},
                         {"name": "ex1_1::b", "status": "fail", "message": "no", "score": 0.0}]}
    encoded = classroom.write(tmp_path, results)
    data = json.loads(base64.b64decode(encoded))
    assert data["max_score"] == 20 and data["status"] == "fail"
    assert all(isinstance(t["score"], float) and {"name", "status", "message"} <= set(t) for t in data["tests"])
    assert sum(t["score"] for t in data["tests"]) == 5.0


@pytest.mark.parametrize("name", ["grade.yml", "grade-class.yml", "classroom.yml"])
def test_every_grading_workflow_installs_what_grading_needs(name):
    text = (ROOT / ".github/workflows" / name).read_text(encoding="utf-8")
    assert '[kernel]"' in text, f"{name} must install the kata with its kernel extra (5.10's Triton)"


@pytest.mark.parametrize("name", ["grade.yml", "classroom.yml"])
def test_a_student_side_workflow_refuses_its_own_repository_as_upstream(name):
    text = (ROOT / ".github/workflows" / name).read_text(encoding="utf-8")
    assert '= "${{ github.repository }}" ]' in text and "exit 1" in text


def test_the_classroom_workflow_reports_to_the_check_run_classroom_reads():
    text = (ROOT / ".github/workflows/classroom.yml").read_text(encoding="utf-8")
    assert "name: Autograding Tests" in text and "checks: write" in text and "KATA_RESULTS:" in text
    assert "runners: kata" in text and "--classroom" in text
