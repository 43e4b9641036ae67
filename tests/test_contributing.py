"""CONTRIBUTING.md stays true: every file it names exists, and every name it gives in backticks is defined where
it says."""

import re

import pytest

from kata.harness.target import ROOT

TEXT = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
PATHS = sorted({p for p in re.findall(r"`([\w./-]+\.(?:py|md))`", TEXT) if "exN_M" not in p})
NAMES = {  # a name the recipes give → the file that must define it
    "EXERCISES": "kata/harness/curriculum.py", "HINTS": "kata/harness/hints.py",
    "BACKDOORS": "kata/harness/curriculum.py", "ANSWER_MODULES": "kata/harness/curriculum.py",
    "HOW_TEXT": "kata/harness/curriculum.py", "HOW_RULES": "kata/harness/curriculum.py",
    "CHECKS": "kata/harness/watch.py", "FORMATS": "kata/lab/format_registry.py",
    "BITS": "tests/test_format_registry.py",
}


@pytest.mark.parametrize("path", PATHS)
def test_every_file_the_recipes_name_exists(path):
    assert (ROOT / path).is_file(), f"CONTRIBUTING.md names {path}, which does not exist"


@pytest.mark.parametrize(("name", "path"), NAMES.items())
def test_every_name_the_recipes_give_is_defined_where_they_say(name, path):
    assert f"`{name}`" in TEXT
    assert re.search(rf"^{name}\b.*=", (ROOT / path).read_text(encoding="utf-8"), re.M), f"{name} in {path}"


def test_the_commands_the_recipes_give_exist():
    assert "python -m kata list --markdown" in TEXT and "python -m kata rules" in TEXT
    main = (ROOT / "kata/__main__.py").read_text(encoding="utf-8")
    assert '"--markdown"' in main and '"rules"' in main
