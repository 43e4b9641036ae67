"""A fork cannot buy a grade: each cheat of the catalogue (tests/cheats.py), planted in a copy of the kata, leaves
the grade at zero, and what the scan or the file comparison finds is named in the summary. Every answer holding a
cheat is otherwise the untouched stub, so every honest point would be zero."""

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from kata.grade import sandbox
from kata.grade.tamper import build_grading_tree, changed_files, fork_changes, scan_answer, scan_answer_file
from kata.harness.target import ROOT
from tests.cheats import ANSWER_CHEATS, ANSWER_CHEATS_2, HARNESS_CHEATS, answer_text
from tests.helpers import copy_checkout, grade_fork


def _grade(fork: Path, out: Path, exercises: list[str], env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Grade `fork` on `exercises`; the results as they stand two seconds after the grader exits (a cheat's child
    in a new session would have rewritten them by then)."""
    proc = grade_fork(fork, out, "--only", ",".join(exercises), "--timeout", "300", env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    time.sleep(2.0)
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return data, (out / "summary.md").read_text(encoding="utf-8")


def _points(data: dict) -> dict[str, tuple[float, int]]:
    return {e["id"]: (e["points"], e["total"]) for e in data["quant_kata"]["exercises"]}


@pytest.fixture(scope="module")
def harness_cheats_graded(tmp_path_factory) -> tuple[dict, str]:
    """One fork holding every cheat outside the answers at once, graded on 1.1 (its answer is the stub)."""
    tmp = tmp_path_factory.mktemp("harness")
    fork = copy_checkout(tmp / "fork")
    env = {}
    for cheat in HARNESS_CHEATS.values():
        for rel, text in cheat.files.items():
            (fork / rel).write_text(text, encoding="utf-8")
        env.update({key: value.format(fork=fork) for key, value in cheat.env.items()})
    return _grade(fork, tmp / "out", ["ex1_1"], env)


def _serve(text: str) -> int:
    """A loopback server that hands `text` to whoever connects: what the network cheat fetches."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(120)

    def serve() -> None:
        with server:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(text.encode())
    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


@pytest.fixture(scope="module")
def answer_cheats_graded(tmp_path_factory) -> dict[str, tuple[dict, str]]:
    """Two forks, each holding one cheat per answer (so one grade run tests many), graded on those exercises."""
    graded = {}
    port = _serve((ROOT / "reference/ex2_2_quant_error.py").read_text(encoding="utf-8"))
    for number, catalogue in enumerate((ANSWER_CHEATS, ANSWER_CHEATS_2)):
        if sandbox.problem():  # the cheats the sandbox stops would win here (their tests skip)
            catalogue = {name: c for name, c in catalogue.items() if not c.defence.startswith("sandbox")}
        tmp = tmp_path_factory.mktemp(f"answers{number}")
        fork = copy_checkout(tmp / "fork")
        for cheat in catalogue.values():
            answer = next((fork / "exercises").glob(f"{cheat.exercise}_*.py"))
            answer.write_text(answer_text(cheat).replace("{port}", str(port)), encoding="utf-8")
        result = _grade(fork, tmp / "out", [cheat.exercise for cheat in catalogue.values()])
        graded.update({name: result for name in catalogue})
    return graded


@pytest.mark.parametrize("cheat", HARNESS_CHEATS)
def test_a_cheat_outside_the_answers_earns_nothing_and_is_named(harness_cheats_graded, cheat):
    data, summary = harness_cheats_graded
    assert data["quant_kata"]["score"] == 0, f"scored {data['quant_kata']['score']}"
    assert data["quant_kata"]["exercises"][0]["total"] > 1, "upstream's tests must have run"
    assert f"`{HARNESS_CHEATS[cheat].named}`" in summary, summary


@pytest.mark.parametrize("cheat", [*ANSWER_CHEATS, *ANSWER_CHEATS_2])
def test_a_cheat_inside_an_answer_earns_nothing(answer_cheats_graded, cheat):
    known = {**ANSWER_CHEATS, **ANSWER_CHEATS_2}[cheat]
    if known.defence.startswith("sandbox") and sandbox.problem():
        pytest.skip(f"这道防线是沙箱，本机建不起 / this defence is the sandbox, which cannot be made here: "
                    f"{sandbox.problem()}")
    data, summary = answer_cheats_graded[cheat]
    points, total = _points(data)[known.exercise]
    assert points == 0, f"{cheat} ({known.exercise}, stopped by: {known.defence}): scored {points} of {total} tests"
    assert data["quant_kata"]["score"] == 0, "the results were rewritten after the grade"
    if known.named:
        assert known.named in summary and "🚫" in summary, summary


def test_only_the_cheats_the_catalogue_says_the_scan_stops_are_seen_by_it(tmp_path):
    """So each other defence is what really stopped its cheats (the scan reads the file as Python would)."""
    for name, cheat in {**ANSWER_CHEATS, **ANSWER_CHEATS_2}.items():
        answer = tmp_path / f"{cheat.exercise}.py"
        answer.write_text(answer_text(cheat), encoding="utf-8")
        assert bool(scan_answer_file(answer)) == (cheat.defence == "scan"), (name, scan_answer_file(answer))


def test_the_catalogue_holds_at_least_30_cheats_across_every_defence():
    cheats = [*HARNESS_CHEATS.values(), *ANSWER_CHEATS.values(), *ANSWER_CHEATS_2.values()]
    assert len(cheats) >= 30
    assert {c.defence.split()[0] for c in cheats} == {"scan", "upstream", "boundary", "sandbox", "exact"}


def test_an_honest_fork_is_graded_in_full_and_nothing_is_listed(tmp_path):
    fork = copy_checkout(tmp_path / "fork")
    (fork / "exercises/ex1_1_weight_memory.py").write_text(
        (ROOT / "reference/ex1_1_weight_memory.py").read_text(encoding="utf-8"), encoding="utf-8")
    data, summary = _grade(fork, tmp_path / "out", ["ex1_1"])
    assert data["quant_kata"]["score"] == data["quant_kata"]["max_score"] > 0
    assert data["quant_kata"]["changed_outside_answers"] == [] and "🚫" not in summary


def test_no_stub_and_no_reference_looks_like_a_forgery():
    for path in sorted((ROOT / "exercises").glob("ex*.py")) + sorted((ROOT / "reference").glob("ex*.py")):
        assert scan_answer(path.read_text(encoding="utf-8")) == [], path.name


@pytest.mark.parametrize("code", [
    "model.eval()", "torch.compile(f)", "s = 'a'.replace('a', 'b')", "for m in model.modules(): pass",
    "x.remove(1)", "setattr(model, 'layer', layer)", "open('notes.txt').read()", "import os\nos.cpu_count()",
])
def test_ordinary_code_is_not_flagged(code):
    assert scan_answer(code) == []


@pytest.mark.parametrize(("code", "named"), [
    ("import pytest", "imports pytest"), ("from _pytest import runner", "imports _pytest"),
    ("import kata.harness.plugin", "imports kata.harness.plugin"), ("from kata import grade", "imports kata.grade"),
    ("import kata.oracles as o\no.rtn = None", "patches o.rtn"), ("import torch\nsetattr(torch, 'x', 1)", "patches"),
    ("open('f', 'w')", "opens a file for writing"), ("import os\nos.remove('f')", "os.remove"),
    ("import sys\nsys.modules['x'] = None", "sys.modules"), ("exec('1')", "exec()"), ("__import__('os')", "__import__"),
    ("import sys\nsys._getframe(1)", "_getframe"), ("import subprocess", "imports subprocess"),
])
def test_each_obvious_forgery_is_flagged(code, named):
    assert any(named in finding for finding in scan_answer(code)), scan_answer(code)


def test_fork_changes_lists_changed_added_and_removed_files_but_not_answers(tmp_path):
    upstream, fork = tmp_path / "up", tmp_path / "fork"
    for root in (upstream, fork):
        (root / "exercises").mkdir(parents=True)
        (root / "exercises/ex1_1_weight_memory.py").write_text(f"# {root.name}\n")
        (root / "kept.py").write_text("same\n")
    (upstream / "changed.py").write_text("1\n")
    (fork / "changed.py").write_text("2\n")
    (upstream / "removed.py").write_text("\n")
    (fork / "exercises/conftest.py").write_text("\n")
    (fork / ".git").mkdir()
    (fork / ".git/HEAD").write_text("ref\n")
    assert fork_changes(fork, upstream) == ["M changed.py", "A exercises/conftest.py", "D removed.py"]


def test_a_coding_cookie_other_than_utf8_is_flagged(tmp_path):
    """Python would read the file as UTF-7 (where "+AF8-" is "_") while a scan reads UTF-8: it is never run."""
    answer = tmp_path / "ex1_1_weight_memory.py"
    answer.write_bytes(b"# -*- coding: utf-7 -*-\nimport os\n")
    assert any("coding cookie 'utf-7'" in finding for finding in scan_answer_file(answer))
    answer.write_bytes(b"# -*- coding: utf-8 -*-\nimport os\n")
    assert scan_answer_file(answer) == []


@pytest.mark.parametrize(("code", "named"), [
    ("from kata.grade import run", "imports kata.grade"),
    ("from kata import __main__", "imports kata.__main__ — 不是学员 API / not the learner API"),
    ("import kata\nkata.harness.check", "touches kata.harness"),
    ("import kata.llama\nkata.lab.formats", "touches kata.lab"),
])
def test_kata_is_imported_only_through_the_learner_api(code, named):
    assert any(named in finding for finding in scan_answer(code)), scan_answer(code)


def test_the_learner_api_is_not_flagged():
    assert scan_answer("from kata import oracles\nfrom kata.llama import Llama\nimport kata.sequential\n"
                       "kata.validate.check_num_bits(4)") == []


def test_a_file_added_to_the_grading_tree_is_a_change(tmp_path):
    tree = tmp_path / "tree"
    expected = build_grading_tree(ROOT, ROOT, tree)
    assert changed_files(tree, expected) == []
    (tree / "kata" / "harness" / "checks.py").write_text("shadow = True\n")
    assert changed_files(tree, expected) == ["添加 / added kata/harness/checks.py"]
