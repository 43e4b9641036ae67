"""A fork cannot buy a grade: each cheat of the catalogue (tests/cheats.py), planted in a copy of the kata, leaves
the grade at zero, and what the scan or the file comparison finds is named in the summary. Every answer holding a
cheat is otherwise the untouched stub, so every honest point would be zero."""

import dataclasses
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from kata.grade import sandbox
from kata.grade.tamper import ForkFileError, build_grading_tree, changed_files, fork_changes, read_fork_file
from kata.harness.curriculum import BY_ID
from kata.harness.scan import scan_answer_file
from kata.harness.target import ROOT
from tests.cheats import (
    ANSWER_CHEATS,
    ANSWER_CHEATS_2,
    HARNESS_CHEATS,
    HOW_CHEATS,
    LINK_CHEATS,
    LINKED_FOLDER,
    Cheat,
    answer_text,
)
from tests.helpers import copy_checkout, grade_fork


def _grade(fork: Path, out: Path, exercises: list[str], env: dict[str, str] | None = None,
           *extra: str) -> tuple[dict, str]:
    """Grade `fork` on `exercises`; the results as they stand two seconds after the grader exits (a cheat's child
    in a new session would have rewritten them by then)."""
    proc = grade_fork(fork, out, "--only", ",".join(exercises), "--timeout", "300", *extra, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    time.sleep(2.0)
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return data, (out / "summary.md").read_text(encoding="utf-8")


def _exercise(data: dict, exercise: str) -> dict:
    return next(e for e in data["quant_kata"]["exercises"] if e["id"] == exercise)


ANSWERS = {**ANSWER_CHEATS, **ANSWER_CHEATS_2, **HOW_CHEATS}


def _forks(catalogue: dict[str, Cheat]) -> list[dict[str, Cheat]]:
    """The cheats packed into as few forks as can hold them: one cheat per exercise in a fork, and the scan's own
    cheats apart from those graded with the scan off (so that their own defence is what stops them)."""
    forks: list[dict[str, Cheat]] = []
    for name, cheat in catalogue.items():
        scanned = cheat.defence == "scan"
        home = next((f for f in forks if (next(iter(f.values())).defence == "scan") == scanned
                     and cheat.exercise not in {c.exercise for c in f.values()}), None)
        if home is None:
            forks.append(home := {})
        home[name] = cheat
    return forks


def _plant(fork: Path, cheats: dict[str, Cheat]) -> None:
    for cheat in cheats.values():
        if cheat.exercise and not cheat.links:
            answer = next((fork / "exercises").glob(f"{cheat.exercise}_*.py"))
            answer.write_text(answer_text(cheat), encoding="utf-8")
        for rel, target in cheat.links.items():
            path = fork / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            path.symlink_to(target.format(fork=fork, upstream=ROOT))


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
    """Each cheat planted in an answer (several forks, one cheat per exercise in each) and graded on those
    exercises; the cheats of other defences than the scan with the scan off."""
    graded = {}
    port = _serve((ROOT / "reference/ex2_2_quant_error.py").read_text(encoding="utf-8"))
    catalogue = {name: c for name, c in ANSWERS.items()
                 if not (c.defence.startswith("sandbox") and sandbox.problem())}  # they would win without one
    for number, cheats in enumerate(_forks(catalogue)):
        tmp = tmp_path_factory.mktemp(f"answers{number}")
        fork = copy_checkout(tmp / "fork")
        _plant(fork, {n: dataclasses.replace(c, code=c.code.replace("{port}", str(port))) for n, c in cheats.items()})
        scan = [] if next(iter(cheats.values())).defence == "scan" else ["--skip-scan"]
        result = _grade(fork, tmp / "out", [c.exercise for c in cheats.values()], None, *scan)
        graded.update({name: result for name in cheats})
    return graded


@pytest.fixture(scope="module")
def link_cheats_graded(tmp_path_factory) -> list[tuple[dict[str, Cheat], dict, str]]:
    """The link cheats: the files in one fork, the linked folder of answers in another."""
    graded = []
    for number, cheats in enumerate((LINK_CHEATS, {"exercises/ linked to the upstream's reference/": LINKED_FOLDER})):
        tmp = tmp_path_factory.mktemp(f"links{number}")
        fork = copy_checkout(tmp / "fork")
        _plant(fork, cheats)
        graded.append((cheats, *_grade(fork, tmp / "out", ["ex1_1", "ex2_1"])))
    return graded


@pytest.mark.parametrize("cheat", HARNESS_CHEATS)
def test_a_cheat_outside_the_answers_earns_nothing_and_is_named(harness_cheats_graded, cheat):
    data, summary = harness_cheats_graded
    assert data["quant_kata"]["score"] == 0, f"scored {data['quant_kata']['score']}"
    assert data["quant_kata"]["exercises"][0]["total"] > 1, "upstream's tests must have run"
    assert f"`{HARNESS_CHEATS[cheat].named}`" in summary, summary


def _sandbox_needed(cheat: Cheat) -> None:
    if cheat.defence.startswith("sandbox") and sandbox.problem():
        pytest.skip(f"这道防线是沙箱，本机建不起 / this defence is the sandbox, which cannot be made here: "
                    f"{sandbox.problem()}")


@pytest.mark.parametrize("cheat", [n for n, c in ANSWERS.items() if not c.fails and not c.copy])
def test_a_cheat_inside_an_answer_earns_nothing(answer_cheats_graded, cheat):
    known = ANSWERS[cheat]
    _sandbox_needed(known)
    data, summary = answer_cheats_graded[cheat]
    result = _exercise(data, known.exercise)
    assert result["points"] == 0, f"{cheat} ({known.exercise}, stopped by: {known.defence}): scored " \
                                  f"{result['points']} ({result['passed']} of {result['total']} tests)"
    kata = data["quant_kata"]
    assert kata["score"] == round(sum(e["points"] for e in kata["exercises"]), 1) < kata["max_score"], \
        "the results were rewritten after the grade"
    if known.named:
        assert known.named in summary and "🚫" in summary, summary


@pytest.mark.parametrize("cheat", [n for n, c in ANSWERS.items() if c.fails])
def test_a_cheat_fails_every_test_of_the_part_it_cheats(answer_cheats_graded, cheat):
    known = ANSWERS[cheat]
    data, _ = answer_cheats_graded[cheat]
    won = [t["name"] for t in data["tests"] if t["name"].startswith(f"{known.exercise}::")
           and any(name in t["name"] for name in known.fails) and t["status"] == "pass"]
    targeted = [t for t in data["tests"] if any(name in t["name"] for name in known.fails)]
    assert targeted and not won, f"{cheat} ({known.defence}) passed {won}"


@pytest.mark.parametrize("cheat", [n for n, c in ANSWERS.items() if c.copy])
def test_a_copy_of_the_reference_is_flagged_by_its_similarity(answer_cheats_graded, cheat):
    known = ANSWERS[cheat]
    data, _ = answer_cheats_graded[cheat]
    result = _exercise(data, known.exercise)
    assert result["points"] == result["max_points"], "a working copy earns its points: the reference is public"
    assert result["similarity_to_reference"] >= 0.9, result["similarity_to_reference"]


def test_a_linked_answer_is_not_read_and_a_linked_file_is_named_not_followed(link_cheats_graded):
    for cheats, data, summary in link_cheats_graded:
        for name, cheat in cheats.items():
            assert cheat.named in summary, (name, summary)
            if cheat.exercise:
                assert _exercise(data, cheat.exercise)["points"] == 0, name


def test_the_scan_refuses_every_cheat_whose_defence_is_the_scan(tmp_path):
    for name, cheat in ANSWERS.items():
        answer = tmp_path / f"{cheat.exercise}.py"
        answer.write_text(answer_text(cheat), encoding="utf-8")
        if cheat.defence == "scan":
            assert scan_answer_file(answer, BY_ID[cheat.exercise]), name


def test_the_catalogue_holds_the_cheats_of_every_defence():
    cheats = [*HARNESS_CHEATS.values(), *ANSWERS.values(), *LINK_CHEATS.values(), LINKED_FOLDER]
    assert len(cheats) >= 50
    assert {c.defence.split()[0] for c in cheats} == {"scan", "upstream", "boundary", "sandbox", "exact", "tripwire",
                                                     "how", "links", "substance", "similarity"}


def test_an_honest_fork_is_graded_in_full_and_nothing_is_listed(tmp_path):
    fork = copy_checkout(tmp_path / "fork")
    (fork / "exercises/ex1_1_weight_memory.py").write_text(
        (ROOT / "reference/ex1_1_weight_memory.py").read_text(encoding="utf-8"), encoding="utf-8")
    data, summary = _grade(fork, tmp_path / "out", ["ex1_1"])
    assert data["quant_kata"]["score"] == data["quant_kata"]["max_score"] > 0
    assert data["quant_kata"]["changed_outside_answers"] == [] and "🚫" not in summary


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


def test_a_file_added_to_the_grading_tree_is_a_change(tmp_path):
    tree = tmp_path / "tree"
    expected = build_grading_tree(ROOT, ROOT, tree)
    assert changed_files(tree, expected) == []
    (tree / "kata" / "harness" / "checks.py").write_text("shadow = True\n")
    assert changed_files(tree, expected) == ["添加 / added kata/harness/checks.py"]


def test_a_fork_file_behind_a_link_fifo_or_linked_folder_is_refused_not_followed(tmp_path):
    fork = tmp_path / "fork"
    (fork / "exercises").mkdir(parents=True)
    (fork / "real").mkdir()
    (fork / "real/ex1_1_weight_memory.py").write_text("x = 1\n")
    (fork / "linked").symlink_to(fork / "real")
    (fork / "exercises/ex2_1_per_tensor.py").symlink_to(fork / "real/ex1_1_weight_memory.py")
    os.mkfifo(fork / "exercises/ex2_2_quant_error.py")
    assert read_fork_file(fork, "real/ex1_1_weight_memory.py") == b"x = 1\n"
    for rel, why in (("linked/ex1_1_weight_memory.py", "linked 是 / is 符号链接"),
                     ("exercises/ex2_1_per_tensor.py", "符号链接 / a symbolic link"),
                     ("exercises/ex2_2_quant_error.py", "管道 / a fifo")):
        with pytest.raises(ForkFileError, match=why):
            read_fork_file(fork, rel)


def test_a_fork_file_larger_than_the_limit_is_refused(tmp_path):
    (tmp_path / "big.py").write_bytes(b"#" * 101)
    assert len(read_fork_file(tmp_path, "big.py", limit=101)) == 101
    with pytest.raises(ForkFileError, match="larger than 100"):
        read_fork_file(tmp_path, "big.py", limit=100)
