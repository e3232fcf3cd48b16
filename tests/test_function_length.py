"""No function in src/xlvlm is over 60 lines unless a reason is written next to it.

A function's length counts from its ``def`` line to its last line, docstring, comments and
blank lines included (decorators excluded): what a reader has to scroll through. Nested
functions count on their own and inside the function holding them. A function may be longer
when the line just above its ``def`` (or above its first decorator) is a comment starting
``# long:`` that says why, e.g. a flat list of argparse options.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xlvlm

MAX_LINES = 60
REASON = "# long:"
PACKAGE = Path(xlvlm.__file__).resolve().parent


def long_functions(source: str, name: str) -> list[str]:
    """``"name:line function (N lines)"`` for each function of ``source`` over MAX_LINES lines
    without a ``# long:`` comment just above it."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        if length <= MAX_LINES:
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = lines[top - 2].strip() if top >= 2 else ""
        if not above.startswith(REASON) or not above[len(REASON):].strip():
            found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_over_60_lines_without_a_reason():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += long_functions(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not found, (f"functions over {MAX_LINES} lines: split them, or write '{REASON} <why>' on the "
                       "line above the def:\n" + "\n".join(found))


def _function(n_body_lines: int, above: str = "", decorated: bool = False) -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(n_body_lines))
    return f"{above}{'@decorator' + chr(10) if decorated else ''}def f():\n{body}"


def test_the_check_counts_from_def_to_the_last_line():
    assert long_functions(_function(MAX_LINES - 1), "m.py") == []  # def + 59 lines = 60
    assert long_functions(_function(MAX_LINES), "m.py") == [f"m.py:1 f ({MAX_LINES + 1} lines)"]


def test_a_reason_just_above_the_def_or_its_decorator_allows_a_long_function():
    reason = "# long: a flat list of options\n"
    assert long_functions(_function(80, above=reason), "m.py") == []
    assert long_functions(_function(80, above=reason, decorated=True), "m.py") == []
    # Not just above, or without a reason: still reported.
    assert long_functions(_function(80, above=reason + "\n"), "m.py") != []
    assert long_functions(_function(80, above="# long:\n"), "m.py") != []
    assert long_functions(_function(80, above="# a comment\n"), "m.py") != []


def test_nested_functions_and_methods_are_checked():
    source = "class C:\n    def method(self):\n" + "".join(f"        y{i} = {i}\n" for i in range(70))
    assert long_functions(source, "m.py") == ["m.py:2 method (71 lines)"]
