"""The import layers of .importlinter hold (docs/architecture.md): `make test` runs the check."""

from __future__ import annotations

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
