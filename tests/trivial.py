"""A family of trivial answers for every exercise: each function the learner must write returns zeros, ones,
its input or a constant, or raises ValueError / TypeError on every call. None of them may earn a point
(tests/test_trivial.py grades them with the grader's own scoring).

平凡答案族：每个要学员写的函数都返回 0、1、输入本身、一个常数，或对每次调用都抛 ValueError / TypeError；
它们一分也不能得。
"""

from __future__ import annotations

import ast

from kata.harness import syntax

KINDS = ("zeros", "ones", "input", "constant", "value_error", "type_error")

RESULT = {  # what a trivial function does with (args, kwargs): an expression of `a` (the positional arguments)
    "zeros": "_like(a, torch.zeros_like, 0.0)",
    "ones": "_like(a, torch.ones_like, 1.0)",
    "input": "(a[0] if a else None)",
    "constant": "1234.5",
}
HELPER = '''

def _like(a, make, number):
    tensor = next((v for v in a if isinstance(v, torch.Tensor)), None)
    return make(tensor) if tensor is not None else number
'''


def _unsolved(node: ast.FunctionDef) -> bool:
    """A function of the stub the learner must write: its body raises NotImplementedError."""
    return any(isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(node))


def _body(kind: str) -> str:
    if kind in ("value_error", "type_error"):
        error = "ValueError" if kind == "value_error" else "TypeError"
        return f"raise {error}('x num_bits group_size dtype rows in_features NaN range even budget_bits names')"
    return f"return {RESULT[kind]}"


def trivial_answer(stub: str, kind: str) -> str:
    """The stub with every function it leaves unsolved replaced by one that does `kind`."""
    tree = syntax.parse(stub)
    lines = [HELPER, "import torch as torch  # noqa: E402", ""]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _unsolved(node):
            lines += [f"def {node.name}(*a, **k):", f"    {_body(kind)}", ""]
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and _unsolved(item):
                    if item.name == "__init__":
                        lines += [f"def _init_{node.name}(self, *a, **k):",
                                  f"    super({node.name}, self).__init__()", "",
                                  f"{node.name}.__init__ = _init_{node.name}", ""]
                    else:
                        wrap = next((ast.unparse(d) for d in item.decorator_list
                                     if ast.unparse(d) in ("classmethod", "staticmethod")), "")
                        first = "" if wrap == "staticmethod" else "self, "
                        lines += [f"def _{node.name}_{item.name}({first}*a, **k):", f"    {_body(kind)}", "",
                                  f"{node.name}.{item.name} = {wrap}(_{node.name}_{item.name})", ""]
    return stub + "\n".join(lines) + "\n"
