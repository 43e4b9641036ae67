"""What a graded fork may change, and how its files are read.

防作弊：评分只采用答案文件（exercises/ 下课程列出的模块），其余一律用上游的；fork 里的文件只按普通文件读取
（路径上任何一处是符号链接、管道或设备都拒绝），读取有大小上限。
A fork's answers are the exercise modules the registry lists (exercises/ex*.py); everything else — tests,
harness, configuration, conftest.py files, plugins — comes from the upstream kata, and changes to it are listed,
never used. Every file of a fork is read as a regular file: each component of its path is checked with lstat (a
symbolic link, fifo, socket or device anywhere on it is refused, never followed), it is opened with O_NOFOLLOW
and O_NONBLOCK, and reads are bounded. The answers are scanned (kata/harness/scan.py) before they run, and after a
run the grading tree is checked for files it changed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from kata.harness.curriculum import ANSWER_FILES

SKIPPED_DIRS = {".git", ".venv", "venv", ".nox", "__pycache__", ".ruff_cache", ".pytest_cache", ".benchmarks",
                ".hypothesis", ".mutmut-cache", "mutants", "bench-results", "grade-results", "build", "dist"}
SOLUTIONS = "reference/"  # never copied into a grading tree: an answer cannot import the solution
ANSWER_LIMIT = 1 << 20  # bytes: an answer module is a few kilobytes
KINDS = {stat.S_IFLNK: "符号链接 / a symbolic link", stat.S_IFIFO: "管道 / a fifo", stat.S_IFSOCK: "套接字 / a socket",
         stat.S_IFCHR: "设备 / a device", stat.S_IFBLK: "设备 / a device"}


class ForkFileError(OSError):
    """A fork's file that is not read: not a regular file, somewhere on its path, or too large."""


def _kind(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "不是普通文件 / not a regular file")


def tree_files(root: Path) -> dict[str, Path]:
    """Relative POSIX path → file for every file under root, leaving out caches, environments and outputs. Links are
    not followed: a linked folder is not entered, a linked file is listed (as itself)."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            if not name.endswith((".pyc", ".pyo")):
                path = Path(folder) / name
                files[path.relative_to(root).as_posix()] = path
    return files


def read_fork_file(root: Path, rel: str, limit: int = ANSWER_LIMIT) -> bytes:
    """The bytes of fork file `rel` (a POSIX path under root), read as a regular file: every component of the path
    is checked without following links, the file is opened with O_NOFOLLOW | O_NONBLOCK (a fifo cannot block the
    grader) and checked again once open; more than `limit` bytes is an error. Raises ForkFileError."""
    path = root
    for part in rel.split("/")[:-1]:
        path = path / part
        mode = os.lstat(path).st_mode
        if not stat.S_ISDIR(mode):
            raise ForkFileError(f"{rel}: {path.relative_to(root).as_posix()} 是 / is {_kind(mode)}")
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        mode = os.lstat(root / rel).st_mode if os.path.lexists(root / rel) else 0
        raise ForkFileError(f"{rel}: {_kind(mode) if mode else error.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ForkFileError(f"{rel}: {_kind(mode)}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ForkFileError(f"{rel}: 超过 / larger than {limit:,} bytes")
    return data


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same(fork: Path, rel: str, upstream_file: Path) -> str | None:
    """None when fork's `rel` holds upstream's bytes, else why not ('' for plain different content)."""
    theirs = fork / rel
    mode = os.lstat(theirs).st_mode
    if not stat.S_ISREG(mode):
        return _kind(mode)
    ours = upstream_file.read_bytes()
    if os.lstat(theirs).st_size != len(ours):
        return ""
    try:
        return None if read_fork_file(fork, rel, len(ours)) == ours else ""
    except ForkFileError as error:
        return str(error).split(": ", 1)[-1]


def fork_changes(fork: Path, upstream: Path) -> list[str]:
    """Files outside the answer modules that the fork changed (M), added (A) or removed (D), sorted; a fork file that
    is not a regular file is named for what it is and never read."""
    theirs, ours = tree_files(fork), tree_files(upstream)
    changes = []
    for rel in sorted(set(theirs) | set(ours)):
        if rel in ANSWER_FILES:
            continue
        if rel not in ours:
            mode = os.lstat(theirs[rel]).st_mode
            changes.append(f"A {rel}" + ("" if stat.S_ISREG(mode) else f" ({_kind(mode)})"))
        elif rel not in theirs:
            changes.append(f"D {rel}")
        else:
            why = _same(fork, rel, ours[rel])
            if why is not None:
                changes.append(f"M {rel}" + (f" ({why})" if why else ""))
    return changes


def answer_bytes(answers: Path, rel: str) -> bytes | None:
    """An answer module of `answers` as a regular file (None where the fork has none: its stub is graded)."""
    return read_fork_file(answers, rel) if os.path.lexists(answers / rel) else None


def build_grading_tree(upstream: Path, answers: Path, dest: Path, solutions: bool = False) -> dict[str, str]:
    """dest = upstream's files (reference/ only if `solutions`), plus the answer modules found in `answers` (a
    checkout; a missing or unreadable answer gets the stub, and the grader has already refused it). Returns the
    digest of every file that is not an answer, for `changed_files` after a run."""
    expected = {}
    for rel, path in tree_files(upstream).items():
        if (rel.startswith(SOLUTIONS) and not solutions) or rel in ANSWER_FILES:
            continue
        data = path.read_bytes()
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        expected[rel] = digest(data)
    for rel in ANSWER_FILES:
        try:
            data = answer_bytes(answers, rel)
        except (ForkFileError, OSError):
            data = None
        (dest / rel).write_bytes(data if data is not None else (upstream / rel).read_bytes())
    return expected


def changed_files(tree: Path, expected: dict[str, str]) -> list[str]:
    """Files of the grading tree (answers aside) that a run added, modified or deleted: a file added beside a kata
    module could shadow it in a later import."""
    out = [f"添加 / added {rel}" for rel in sorted(set(tree_files(tree)) - set(expected) - ANSWER_FILES)]
    for rel, want in sorted(expected.items()):
        path = tree / rel
        if not path.is_file():
            out.append(f"删除 / deleted {rel}")
        elif digest(path.read_bytes()) != want:
            out.append(f"修改 / modified {rel}")
    return out
