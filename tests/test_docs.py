"""The examples users read must run: README's Python block and every docstring example."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import faltung

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(code, str(README), "exec"), {})
    assert "gradcheck passed: max relative error" in capsys.readouterr().out


def test_readme_names_only_flags_that_exist():
    from faltung.cli import build_parser

    parser = build_parser()
    known = {opt for action in parser._actions for opt in action.option_strings}
    for sub in parser._subparsers._group_actions[0].choices.values():
        known |= {opt for action in sub._actions for opt in action.option_strings}
    for script in (README.parent / "bench").glob("*.py"):  # python -m bench.* options
        known |= set(re.findall(r'add_argument\(\s*"(--[a-z-]+)"', script.read_text()))
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", README.read_text()))
    assert mentioned - known == set(), mentioned - known


MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(faltung.__path__, "faltung.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
