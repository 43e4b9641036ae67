"""How close an answer is to the published reference solution, for the instructor's eye (it never changes points).

相似度：把答案和参考答案各自编译（从不运行），取每个函数的字节码指令序列（局部变量名、自己定义的名字和字符串都抹掉，
调用的库函数与数字保留），函数对函数地配对，按参考答案各函数的长度加权求平均。改名、调换函数顺序、加上不用的代码
都不会让一份拷贝的相似度变低；它不影响分数，只供老师参考。
Both files are compiled, never run (kata/harness/scan.py refuses code made at run time, so what runs is what is
compiled). Each function's code object becomes a sequence of instructions: local names, names the file defines
itself (functions, classes, module constants) and strings are blanked; the library calls, attribute names, numbers
and operators stay. A function is the set of its runs of SHINGLE instructions in a row; every reference function is
matched to a different answer function, best pairs first, by the share of its runs the answer function holds too;
the figure is those shares weighted by the reference functions' lengths. So renaming, reordering and padding (dead
functions, data tables) leave a copy at ≈ 1 (≥ 0.93 measured), the untouched stubs read ≤ 0.15 and independently
written answers ≤ 0.4 (tests/test_similarity.py, on answers kept in tests/data/independent/).
"""

from __future__ import annotations

import ast
import dis
import types

from kata.harness import syntax

SHINGLE = 4  # instructions in a row: one or two statements
SKIPPED = {"NOP", "RESUME", "CACHE", "PRECALL", "EXTENDED_ARG", "COPY_FREE_VARS", "MAKE_CELL", "KW_NAMES",
           "RETURN_GENERATOR", "NOT_TAKEN", "POP_TOP"}
LOCAL = {"LOAD_FAST", "STORE_FAST", "DELETE_FAST", "LOAD_DEREF", "STORE_DEREF", "LOAD_CLOSURE", "LOAD_FAST_CHECK",
         "LOAD_FAST_AND_CLEAR", "LOAD_FAST_LOAD_FAST", "STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST",
         "LOAD_FAST_BORROW", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"}
NAMED = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_NAME", "STORE_GLOBAL", "LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR",
         "IMPORT_NAME", "IMPORT_FROM", "LOAD_SUPER_ATTR"}


def own_names(tree: ast.Module) -> set[str]:
    """Every name the file defines itself: functions, classes, module-level assignments (a copy renames them)."""
    names = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                        ast.ClassDef))}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _constant(value: object) -> str:
    if isinstance(value, (str, bytes)):
        return "S"
    if isinstance(value, (tuple, frozenset)):
        return f"({','.join(_constant(v) for v in value)})"
    return "CODE" if isinstance(value, types.CodeType) else repr(value)


def instructions(code: types.CodeType, own: set[str]) -> list[str]:
    """One function's instructions, normalised: locals and the file's own names blanked, strings as S."""
    out = []
    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in SKIPPED:
            continue
        if op in LOCAL:
            out.append(op)
        elif op in NAMED:
            name = str(ins.argval).split(" ")[0] if isinstance(ins.argval, str) else str(ins.argval)
            out.append(f"{op}:{'OWN' if name in own else name}")
        elif op in ("LOAD_CONST", "RETURN_CONST", "LOAD_SMALL_INT"):
            out.append(f"CONST:{_constant(ins.argval)}")
        elif op in ("BINARY_OP", "COMPARE_OP", "CONTAINS_OP", "IS_OP"):
            out.append(f"{op}:{ins.argrepr}")
        else:
            out.append(op)
    return out


def functions(source: str) -> list[list[str]]:
    """Each function's (and method's) normalised instructions; [] for a file that does not compile."""
    try:
        tree = syntax.parse(source)
        module = syntax.compile_tree(tree, "<answer>")
    except (SyntaxError, ValueError):
        return []
    own, found, todo = own_names(tree), [], [module]
    while todo:
        code = todo.pop()
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        if code is not module and not code.co_name.startswith("<"):  # functions, not class bodies or lambdas' scopes
            found.append(instructions(code, own))
    return [f for f in found if f]


def shingles(instructions: list[str]) -> set[tuple[str, ...]]:
    """The runs of SHINGLE instructions in a row (a shorter function: itself)."""
    return {tuple(instructions[i:i + SHINGLE]) for i in range(max(1, len(instructions) - SHINGLE + 1))}


def similarity(answer: str, reference: str) -> float:
    """0 … 1: each reference function paired with a different answer function (best first) by the share of its
    shingles the answer function has, the shares weighted by the reference functions' lengths."""
    ours, theirs = [shingles(f) for f in functions(answer)], functions(reference)
    total = sum(len(f) for f in theirs)
    if not ours or not total:
        return 0.0
    runs = [shingles(f) for f in theirs]
    pairs = sorted(((len(r & g) / len(r), i, j) for i, r in enumerate(runs) for j, g in enumerate(ours)),
                   reverse=True)
    used_ref, used_answer, score = set(), set(), 0.0
    for ratio, i, j in pairs:
        if i not in used_ref and j not in used_answer:
            used_ref.add(i)
            used_answer.add(j)
            score += ratio * len(theirs[i])
    return score / total
