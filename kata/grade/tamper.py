"""What a graded fork may change, and the obvious ways an answer could forge its grade.

防作弊：评分只采用答案文件（exercises/ 下课程列出的模块），其余一律用上游的；答案文件先做静态检查。
A fork's answers are the exercise modules the curriculum lists (exercises/ex*.py); everything else — tests,
harness, configuration, conftest.py files, plugins — comes from the upstream kata, and changes to it are
listed, never used. An answer module is still code that runs with the grader's rights, so before it runs it is
scanned for the obvious forgeries: importing pytest or the harness, patching attributes of other modules,
writing or deleting files, reaching into the interpreter. After it runs, the grading tree is checked for
files it changed. What a determined forger can still do (obfuscated code) is for the instructor's review.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import tokenize
from pathlib import Path

from kata.harness.curriculum import EXERCISES

ANSWER_FILES = frozenset(f"exercises/{ex.module}.py" for ex in EXERCISES)
SKIPPED_DIRS = {".git", ".venv", "venv", ".nox", "__pycache__", ".ruff_cache", ".pytest_cache", ".benchmarks",
                ".hypothesis", ".mutmut-cache", "mutants", "bench-results", "grade-results", "build", "dist"}
SOLUTIONS = "reference/"  # never copied into a grading tree: an answer cannot import the solution

FORBIDDEN_IMPORTS = {  # top-level module (or kata submodule) → what importing it is for
    "pytest": "pytest 内部 / pytest internals", "_pytest": "pytest 内部 / pytest internals",
    "pluggy": "pytest 内部 / pytest internals", "py": "pytest 内部 / pytest internals",
    "conftest": "评分框架 / the harness", "tests": "评分框架 / the harness",
    "kata.harness": "评分框架 / the harness", "kata.grade": "评分框架 / the harness",
    "kata.lab": "实验 / the lab", "reference": "参考答案 / the reference solutions",
    "builtins": "解释器 / the interpreter", "inspect": "解释器 / the interpreter", "gc": "解释器 / the interpreter",
    "ctypes": "解释器 / the interpreter", "importlib": "解释器 / the interpreter",
    "atexit": "解释器 / the interpreter", "subprocess": "子进程 / subprocesses", "shutil": "文件 / files",
}
# What an answer may import from kata: the learner API (kata/*.py, the flat modules README lists), nothing else.
LEARNER_API = frozenset({"cpu", "decode", "evaluate", "gguf_export", "llama", "oracles", "report", "sequential",
                         "smollm2", "static_decode", "timing", "validate"})
BUILTINS_THAT_FORGE = {"exec", "eval", "compile", "__import__", "globals", "breakpoint"}  # called by bare name
PATH_WRITES = {"write_text", "write_bytes", "unlink", "rmdir", "touch", "symlink_to", "hardlink_to"}  # any owner
OS_CALLS = {"remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "system", "popen", "kill",
            "killpg", "truncate", "chmod", "open", "write", "fork", "execv", "execve", "execvp", "spawnv", "putenv"}
INTERPRETER_ATTRIBUTES = {"_getframe", "settrace", "setprofile", "__builtins__", "__globals__",
                          "__code__", "f_back", "f_globals", "f_locals"}


def _dotted(node: ast.expr) -> str:
    """'a.b.c' for a chain of names and attributes, '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _writes(call: ast.Call) -> bool:
    """open(path, mode) with a mode that writes, appends, creates or updates (or a mode it cannot read)."""
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None:
        return False
    return not (isinstance(mode, ast.Constant) and isinstance(mode.value, str) and not set(mode.value) & set("wax+"))


def scan_answer(source: str) -> list[str]:
    """The obvious forgeries in an answer module's source, one line each: "line 3: 导入 / imports _pytest …"."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it cannot import: the test run reports the syntax error itself
    modules = {(a.asname or a.name).split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names}
    modules |= {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for a in node.names if node.module and node.module.split(".")[0] in {"kata", "torch", "os", "sys"}}
    kata_names = {a.asname or "kata" for node in ast.walk(tree) if isinstance(node, ast.Import)  # names bound to
                  for a in node.names if a.name == "kata" or (a.asname is None and a.name.startswith("kata."))}
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]  # from kata import grade
            for name in names:
                forbidden = [why for prefix, why in FORBIDDEN_IMPORTS.items()
                             if name == prefix or name.startswith(prefix + ".")]
                parts = name.split(".")
                if not forbidden and parts[0] == "kata" and len(parts) > 1 and parts[1] not in LEARNER_API:
                    forbidden = ["不是学员 API / not the learner API"]
                found.update((line, f"导入 / imports {name} — {why}") for why in forbidden[:1])
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BUILTINS_THAT_FORGE:
                found.add((line, f"调用 / calls {func.id}() — 动态执行 / dynamic code"))
            elif isinstance(func, ast.Name) and func.id in {"setattr", "delattr"} and node.args and \
                    _dotted(node.args[0]).split(".")[0] in modules:
                found.add((line, f"改写 / patches {_dotted(node.args[0])} with {func.id}()"))
            elif isinstance(func, ast.Name) and func.id == "open" and _writes(node):
                found.add((line, "以写模式打开文件 / opens a file for writing"))
            elif isinstance(func, ast.Attribute) and (func.attr in PATH_WRITES or (
                    func.attr in OS_CALLS and _dotted(func.value) in {"os", "shutil", "subprocess"})):
                found.add((line, f"调用 / calls {_dotted(func) or func.attr}() — 文件或进程 / files or processes"))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in kata_names and node.attr not in LEARNER_API:
            found.add((line, f"访问 / touches {node.value.id}.{node.attr} — 不是学员 API / not the learner API"))
        elif isinstance(node, ast.Attribute) and (node.attr in INTERPRETER_ATTRIBUTES
                                                  or _dotted(node) == "sys.modules"):
            found.add((line, f"访问 / touches {_dotted(node) or node.attr} — 解释器 / the interpreter"))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _dotted(target).split(".")[0] in modules:
                    found.add((line, f"改写 / patches {_dotted(target)}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def scan_answer_file(path: Path) -> list[str]:
    """scan_answer on the text Python will run: a coding cookie other than UTF-8 would make Python read the file
    differently from the scan, so it is a finding of its own."""
    data = path.read_bytes()
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return []  # an unknown encoding cannot be imported: the test run reports it
    if encoding not in ("utf-8", "utf-8-sig"):
        return [f"line 1: 编码声明 / coding cookie {encoding!r} — 只接受 UTF-8 / only UTF-8 is read the way Python "
                "reads it"]
    return scan_answer(data.decode("utf-8-sig", errors="replace"))


def tree_files(root: Path) -> dict[str, Path]:
    """Relative POSIX path → file for every file under root, leaving out caches, environments and outputs."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in names:
            if not name.endswith((".pyc", ".pyo")):
                path = Path(folder) / name
                files[path.relative_to(root).as_posix()] = path
    return files


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fork_changes(fork: Path, upstream: Path) -> list[str]:
    """Files outside the answer modules that the fork changed (M), added (A) or removed (D), sorted."""
    theirs, ours = tree_files(fork), tree_files(upstream)
    changes = []
    for rel in sorted(set(theirs) | set(ours)):
        if rel in ANSWER_FILES:
            continue
        if rel not in ours:
            changes.append(f"A {rel}")
        elif rel not in theirs:
            changes.append(f"D {rel}")
        elif theirs[rel].read_bytes() != ours[rel].read_bytes():
            changes.append(f"M {rel}")
    return changes


def build_grading_tree(upstream: Path, answers: Path, dest: Path, solutions: bool = False) -> dict[str, str]:
    """dest = upstream's files (reference/ only if `solutions`), plus the answer modules found in `answers` (a
    checkout). Returns the digest of every file that is not an answer, for `changed_files` after a run."""
    expected = {}
    for rel, path in tree_files(upstream).items():
        if (rel.startswith(SOLUTIONS) and not solutions) or rel in ANSWER_FILES:
            continue
        data = path.read_bytes()
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        expected[rel] = digest(data)
    for rel in ANSWER_FILES:
        source = answers / rel if (answers / rel).is_file() else upstream / rel  # a missing answer: the stub
        (dest / rel).write_bytes(source.read_bytes())
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
