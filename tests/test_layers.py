"""The import layers of .importlinter hold (docs/architecture.md): `make test` runs the check."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import xlvlm

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
PACKAGE = Path(xlvlm.__file__).resolve().parent


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """Run import-linter over the ``xlvlm`` found in ``package_parent``, in a fresh interpreter
    (import-linter locates the package by importing it: it must find that copy first)."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(CONFIG)!r}, no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=package_parent, capture_output=True, text=True,
                          env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_the_import_contracts_hold():
    result = lint_imports(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_a_forbidden_import_breaks_the_layers(tmp_path):
    """The check bites: models importing the organism (the cycle this contract removed) fails it."""
    copy = tmp_path / "xlvlm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    aliases = copy / "models" / "registry.py"
    aliases.write_text(aliases.read_text() + "\nfrom xlvlm import organism  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "xlvlm.models.registry -> xlvlm.organism" in result.stdout


def _contract_layers() -> list[str]:
    """The layers of .importlinter's layers contract, top first, as written ("a | b", "a : b")."""
    import configparser

    parser = configparser.ConfigParser(comment_prefixes=("#",), inline_comment_prefixes=None)
    parser.read(CONFIG)
    return [line.strip() for line in parser["importlinter:contract:layers"]["layers"].splitlines() if line.strip()]


def test_the_architecture_page_draws_the_contract_layers():
    page = (ROOT / "docs" / "architecture.md").read_text()
    diagram = page.split("```\n", 2)[1]
    drawn = [line.split("  ")[1].strip() for line in diagram.splitlines() if line.strip()]
    # The page names each layer by its package (cli, not cli : cli_config : cli_validate), and
    # optional layers without their parentheses.
    assert drawn == [layer.split(" : ")[0].replace("(", "").replace(")", "") for layer in _contract_layers()]


# ---------------------------------------------------------------------------------------------
# Imports that import-linter cannot see: module names written as strings

#: Calls that import a module named by their first argument.
IMPORTERS = {"import_module", "__import__", "find_spec", "EntryPoint"}
#: Modules whose importer calls take a name built at run time, and why that name stays inside
#: the module's own package (or names no module of xlvlm).
BUILT_NAMES = {
    "__init__.py": "the top-level package re-exports the layers' public names; it is in no layer",
    "models/registry.py": "imports models' own family modules, found with pkgutil",
    "testing/builders/__init__.py": "imports testing.builders' own builder modules by family name",
    "models/molmo.py": "asks find_spec whether tensorflow is installed",
    "lazy.py": "imports the places registries and package inits give as strings (each checked where it is "
               "written) and a package's own submodules",
}
MODULE_NAME = re.compile(r"xlvlm(\.[A-Za-z_]\w*)+(:[\w.]+)?")


def _layer_places() -> dict[str, tuple[int, int]]:
    """Top-level module -> (its layer's row, top first; its column among independent layers)."""
    places = {}
    for row, layer in enumerate(_contract_layers()):
        for column, group in enumerate(layer.replace("(", "").replace(")", "").split("|")):
            for name in group.split(":"):
                places[name.strip()] = (row, column)
    return places


def _may_name(places, importer: str, imported: str) -> bool:
    """Whether top-level module ``importer`` may import ``imported`` under the layers contract."""
    if imported not in places or importer == imported:
        return True
    (row, column), (their_row, their_column) = places[importer], places[imported]
    return their_row > row or (their_row == row and their_column == column)


def _call_name(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def string_imports_upwards(package: Path) -> list[str]:
    """Every string in ``package``'s modules that names a module of a higher layer (a module name,
    or an entry point "module:attr"), and every importer call whose module name is built at run
    time outside BUILT_NAMES: "file:line: what"."""
    places, found = _layer_places(), []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        importer = relative.split("/")[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), filename=relative)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.fullmatch(node.value):
                imported = node.value.split(":")[0].split(".")[1]
                if relative != "__init__.py" and not _may_name(places, importer, imported):
                    found.append(f"{relative}:{node.lineno}: names {node.value!r}, a module of a higher layer")
            elif isinstance(node, ast.Call) and _call_name(node) in IMPORTERS and relative not in BUILT_NAMES:
                if not (node.args and isinstance(node.args[0], ast.Constant)):
                    found.append(f"{relative}:{node.lineno}: {_call_name(node)} of a name built at run time")
    return found


def test_no_module_names_a_higher_layer_in_a_string():
    assert string_imports_upwards(PACKAGE) == []


def test_a_string_import_upwards_is_found(tmp_path):
    """The check bites: models importing the organism by name, or by a name it builds."""
    copy = tmp_path / "xlvlm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    registry = copy / "models" / "registry.py"
    registry.write_text(registry.read_text() + "\nPLUGINS = {'organism': 'xlvlm.organism'}\n")
    base = copy / "models" / "base.py"
    base.write_text(base.read_text() + "\n\ndef plugin(name):\n    import importlib\n"
                    "    return importlib.import_module('xlvlm.' + name)\n")
    found = string_imports_upwards(copy)
    assert len(found) == 2
    assert found[0].startswith("models/base.py:") and "import_module of a name built at run time" in found[0]
    assert found[1].startswith("models/registry.py:") and "'xlvlm.organism', a module of a higher layer" in found[1]
