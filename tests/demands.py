"""What a graded test demands of the learner's code, read from the test module, and whether the stub says it.

学员不应靠读测试来猜要求：测试要求的异常类型、错误信息里的词、进度和理由里的文字，都必须写在存根的文档字符串里。
A demand is stated when the stub's docstrings say it:
- raises(Error, match=word) (kata.harness.check's exact-type one, or pytest.raises): the exception's name appears
  in a "bad input" paragraph of the stub, and so does the word — or the word is one of the stub's argument names
  and the paragraph states the rule NAMES_THE_ARGUMENT;
- assert "text" in …, re.search(r"\\btext\\b", …): the text appears in the stub's docstrings. Numbers the test
  passed in and expects quoted back ("0.1197", "85%") are left out; counted progress ("25/25", "(1/3)") needs the
  stub to show the count's form, "i/n" or "(i/n)".
- @pytest.mark.demands("text", …) on a test: what it asks that no call shows plainly (an argument of another
  dtype than the usual one, an attribute a layer may lack) — each text appears in the stub's docstrings.
A bad input is paired when kata's raises is given valid=, the nearest input that must not raise (`unpaired`).
The answer rules are demands too (`rules_unstated`): the stub names `python -m kata rules`, every symbol of the
exercise's own job (the registry's own_job) and, for each check of how, the words that rule turns on (HOW_RULES).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kata.harness.curriculum import HOW_RULES, Exercise

NAMES_THE_ARGUMENT = "every message names the argument"
NUMBER = re.compile(r"[\d.,]+%?")
COUNT = re.compile(r"(\()?[\d{}]+/[\d{}]+(\))?")


def docstrings(source: str) -> str:
    """Every docstring of a module (module, classes, functions), joined."""
    return "\n\n".join(ast.get_docstring(node) or "" for node in ast.walk(ast.parse(source))
                       if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)))


def bad_input(doc: str) -> str:
    """The paragraphs that speak of bad input."""
    return "\n\n".join(p for p in re.split(r"\n\s*\n", doc) if "bad input" in p)


def _text(node: ast.expr) -> str | None:
    """A string constant, or an f-string with its holes written as {}; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _word(pattern: str) -> str:
    return pattern.removeprefix(r"\b").removesuffix(r"\b")


def demands(test_source: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, kind, details) for every demand in a test module: ("raises", (exception names…, "match", word)) and
    ("text", (text,))."""
    found = []
    for node in ast.walk(ast.parse(test_source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("pytest.raises", "raises") and node.args:
            kinds = node.args[0].elts if isinstance(node.args[0], ast.Tuple) else [node.args[0]]
            names = tuple(k.id for k in kinds if isinstance(k, ast.Name) and k.id[0].isupper())
            words = tuple(_word(k.value.value) for k in node.keywords
                          if k.arg == "match" and isinstance(k.value, ast.Constant))
            found.append((node.lineno, "raises", names + words))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In):
            text = _text(node.left)
            if text is not None:
                found.append((node.lineno, "text", (text,)))
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.mark.demands":
            found += [(node.lineno, "text", (arg.value,)) for arg in node.args if isinstance(arg, ast.Constant)]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "re.search" and node.args:
            text = _text(node.args[0])
            if text is not None and "{}" not in text:
                found.append((node.lineno, "text", (_word(text),)))
    return sorted(found, key=lambda d: d[0])


def unstated(stub: Path, test: Path) -> list[str]:
    """The demands of `test` that `stub` does not state, one line each ("test_x.py:12 raises TypeError")."""
    source = stub.read_text(encoding="utf-8")
    doc = docstrings(source)
    paragraph = bad_input(doc)
    arguments = {a.arg for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)
                 for a in node.args.args + node.args.kwonlyargs}
    missing = []
    for line, kind, details in demands(test.read_text(encoding="utf-8")):
        if kind == "raises":
            for item in details:
                named_argument = item in arguments and NAMES_THE_ARGUMENT in paragraph
                if item not in paragraph and not named_argument:
                    missing.append(f"{test.name}:{line} raises … {item!r} (not in a 'bad input' paragraph)")
            continue
        text = details[0]
        count = COUNT.fullmatch(text)
        if count:
            form = "(i/n)" if count.group(1) else "i/n"
            if form not in doc:
                missing.append(f"{test.name}:{line} counts {text!r} (the stub never shows the form {form})")
        elif "{}" not in text and not NUMBER.fullmatch(text) and text not in doc:
            missing.append(f"{test.name}:{line} expects the text {text!r}")
    return missing


def unpaired(test_source: str) -> list[int]:
    """Lines of a test module where a bad input is tried without its valid twin: pytest.raises, or kata's raises
    without valid=. An answer that raises on every input would pass such a test."""
    lines = []
    for node in ast.walk(ast.parse(test_source)):
        name = ast.unparse(node.func) if isinstance(node, ast.Call) else ""
        if name == "pytest.raises" or (name == "raises" and not any(k.arg == "valid" for k in node.keywords)):
            lines.append(node.lineno)
    return lines


def rules_unstated(ex: Exercise, stub: Path) -> list[str]:
    """The answer rules of `ex` that `stub`'s docstrings do not state, one line each."""
    doc = docstrings(stub.read_text(encoding="utf-8"))
    missing = [] if f"python -m kata rules {ex.id}" in doc else [f"the command `python -m kata rules {ex.id}`"]
    missing += [f"its own job {symbol}" for symbol in ex.own_job if symbol not in doc]
    missing += [f"the check of how {name!r} ({HOW_RULES[name]!r})" for name in ex.how if HOW_RULES[name] not in doc]
    return missing
