"""No public function or method in src/xlvlm takes more than 8 parameters unless it takes a
settings object, or a reason is written next to it.

Parameters count as written: positional, keyword-only, ``*args`` and ``**options`` (one each);
``self``/``cls`` do not. Public: a module-level function or a method of a class, whose own name,
class name and module names do not start with ``_`` (``__init__`` counts: it is the class's
constructor). A function takes a settings object when one of its parameters is named
``settings`` or annotated with a class whose name ends in ``Settings`` (a dataclass such as
``ComparisonSettings``): then the parameters beyond it run the stage (model, output, progress).
Otherwise a longer list needs the line just above its ``def`` (or above its first decorator) to
be a comment starting ``# params:`` that says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import xlvlm

MAX_PARAMETERS = 8
REASON = "# params:"
PACKAGE = Path(xlvlm.__file__).resolve().parent


def _parameters(node: ast.FunctionDef, method: bool) -> list[ast.arg]:
    args = node.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if method and named and named[0].arg in ("self", "cls") and not any(
            isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list):
        named = named[1:]
    return named + [a for a in (args.vararg, args.kwarg) if a is not None]


def _takes_settings(parameters: list[ast.arg]) -> bool:
    def annotated(arg):
        text = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        return any(part.strip().split(".")[-1].endswith("Settings") for part in text.replace("|", " ").split())
    return any(arg.arg == "settings" or annotated(arg) for arg in parameters)


def _public_functions(tree: ast.Module):
    """(function node, is a method) of the module's public functions and public classes' methods."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node, False
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        (not item.name.startswith("_") or item.name == "__init__"):
                    yield item, True


def long_parameter_lists(source: str, name: str) -> list[str]:
    """``"name:line function (N parameters)"`` for each public function of ``source`` over
    MAX_PARAMETERS parameters that takes no settings object and has no ``# params:`` reason."""
    lines = source.splitlines()
    found = []
    for node, method in _public_functions(ast.parse(source)):
        parameters = _parameters(node, method)
        if len(parameters) <= MAX_PARAMETERS or _takes_settings(parameters):
            continue
        top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = lines[top - 2].strip() if top >= 2 else ""
        if not above.startswith(REASON) or not above[len(REASON):].strip():
            found.append(f"{name}:{node.lineno} {node.name} ({len(parameters)} parameters)")
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        if not any(part.startswith("_") and part != "__init__.py" for part in relative.parts):
            yield path, str(relative)


def test_no_public_function_takes_over_8_parameters_without_settings_or_a_reason():
    found = []
    for path, name in _modules():
        found += long_parameter_lists(path.read_text(encoding="utf-8"), name)
    assert not found, (f"public functions with over {MAX_PARAMETERS} parameters: give the stage a settings "
                       f"dataclass (as ComparisonSettings), or write '{REASON} <why>' on the line above the "
                       "def:\n" + "\n".join(found))


def _function(n: int, above: str = "", extra: str = "") -> str:
    return f"{above}def f({', '.join(f'p{i}' for i in range(n))}{extra}):\n    pass\n"


def test_the_check_counts_every_kind_of_parameter():
    assert long_parameter_lists(_function(MAX_PARAMETERS), "m.py") == []
    assert long_parameter_lists(_function(MAX_PARAMETERS + 1), "m.py") == ["m.py:1 f (9 parameters)"]
    assert long_parameter_lists(_function(MAX_PARAMETERS - 1, extra=", *args, **options"), "m.py") == \
        ["m.py:1 f (9 parameters)"]
    method = "class C:\n    def m(self, " + ", ".join(f"p{i}" for i in range(MAX_PARAMETERS)) + "):\n        pass\n"
    assert long_parameter_lists(method, "m.py") == []  # self does not count
    assert long_parameter_lists(method.replace("p0", "p0, q"), "m.py") == ["m.py:2 m (9 parameters)"]


def test_a_settings_object_or_a_reason_allows_more_and_private_names_are_free():
    assert long_parameter_lists(_function(12, extra=", settings=None"), "m.py") == []
    assert long_parameter_lists(_function(12, extra=", how: SweepSettings | None = None"), "m.py") == []
    assert long_parameter_lists(_function(12, above="# params: mirrors transformers' generate\n"), "m.py") == []
    assert long_parameter_lists(_function(12, above="# params:\n"), "m.py") != []
    assert long_parameter_lists("def _f(" + ", ".join(f"p{i}" for i in range(12)) + "):\n    pass\n", "m.py") == []
    nested = "def f():\n    def g(" + ", ".join(f"p{i}" for i in range(12)) + "):\n        pass\n"
    assert long_parameter_lists(nested, "m.py") == []
