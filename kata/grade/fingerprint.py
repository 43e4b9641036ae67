"""Similarity between students' answers, for the instructor's eye (it never changes points).

学员之间的相似度：和 MOSS / JPlag 一样用指纹。每个函数编译成规范化的指令序列（kata/grade/similarity.py：改名、
调换顺序都不影响），取连续 K 条指令的哈希，再做 winnowing（每 W 个里取最小的），减去存根自己的指纹，最后按
共享指纹数 / 较小那份的指纹数排序。不用两两比较整个文件，300 个学员也很快。
Like MOSS and JPlag: each function's normalised instructions (kata/grade/similarity.py, so renaming and reordering
change nothing) are cut into k-grams of K instructions, hashed (a stable CRC, the same in every process), and
winnowed (the least hash of every W in a row); the stub's own fingerprints are subtracted, and so are those most of
the class shares (the idioms every answer has). Pairs come from an inverted index of fingerprints → students, not
from comparing every pair of files; a pair's figure is shared / the smaller set.
"""

from __future__ import annotations

import itertools
import zlib
from collections import Counter, defaultdict

from kata.grade.similarity import functions

K, W = 6, 4  # instructions per k-gram; k-grams per winnowing window


def _hashes(instructions: list[str]) -> list[int]:
    grams = (instructions[i:i + K] for i in range(max(1, len(instructions) - K + 1)))
    return [zlib.crc32("\x1f".join(gram).encode()) for gram in grams]


def fingerprints(source: str, stub: str = "") -> frozenset[int]:
    """The winnowed fingerprints of every function of `source`, less those of `stub` (the handed-out code)."""
    prints = set()
    for instructions in functions(source):
        hashes = _hashes(instructions)
        for start in range(max(1, len(hashes) - W + 1)):
            window = hashes[start:start + W]
            prints.add(min(window))
    return frozenset(prints - (fingerprints(stub) if stub else set()))


def similar_pairs(prints: dict[str, frozenset[int]], top: int = 10,
                  floor: float = 0.5) -> list[tuple[str, str, float]]:
    """The `top` pairs of students sharing the largest part of their fingerprints (at least `floor`), best first.
    Fingerprints held by more than half of a class of four or more are left out: they are common idioms."""
    holders: dict[int, list[str]] = defaultdict(list)
    for student, own in prints.items():
        for value in own:
            holders[value].append(student)
    common = max(2, len(prints) // 2) if len(prints) >= 4 else len(prints)
    shared: Counter[tuple[str, str]] = Counter()
    for students in holders.values():
        if len(students) <= common:
            shared.update(itertools.combinations(sorted(students), 2))
    kept = {s: len({v for v in own if len(holders[v]) <= common}) for s, own in prints.items()}
    scored = [(a, b, n / min(kept[a], kept[b])) for (a, b), n in shared.items() if min(kept[a], kept[b])]
    return sorted((p for p in scored if p[2] >= floor), key=lambda p: (-p[2], p[0], p[1]))[:top]
