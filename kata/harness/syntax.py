"""Python source to a syntax tree (and a tree to code), safe from several threads at once.

The grader runs exercises side by side in threads, and each reads Python source: the answer scan, the similarity
figure, the upstream tests' bad-input and skip lists. CPython 3.11 counts the AST constructor's recursion in state
that threads share, so two `ast.parse` calls at once can fail with "SystemError: AST constructor recursion depth
mismatch" (python/cpython gh-106905; CI's Python 3.11.7 did). Every parse in kata/ goes through here, one at a time.
"""

import ast
import threading
from types import CodeType

_ONE_AT_A_TIME = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse(source)`, one thread at a time."""
    with _ONE_AT_A_TIME:
        return ast.parse(source, filename)


def compile_tree(tree: ast.Module, filename: str) -> CodeType:
    """`compile(tree, filename, "exec")` without the caller's future flags, one thread at a time."""
    with _ONE_AT_A_TIME:
        return compile(tree, filename, "exec", dont_inherit=True)
