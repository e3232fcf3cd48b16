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
