"""Model-name aliases: ``organism:`` names resolve through the entry point xlvlm declares in the
``xlvlm.aliases`` group (models never names the organism)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.models.registry import ALIAS_GROUP, register_alias, resolve_alias

ROOT = Path(__file__).resolve().parents[2]


def test_organism_names_resolve_to_the_shipped_folders():
    folder = xlvlm.organism.path("finetuned")
    assert resolve_alias("organism:finetuned") == str(folder)
    with pytest.raises(XlvlmError, match="unknown organism 'nope'"):
        resolve_alias("organism:nope")


def test_folders_and_hub_ids_pass_through(tmp_path):
    odd = tmp_path / "with:colon"
    odd.mkdir()
    for name in ("llava-hf/llava-1.5-7b-hf", "runs/organism/original", str(odd)):
        assert resolve_alias(name) == name


def test_an_unknown_prefix_is_refused_in_one_line():
    with pytest.raises(XlvlmError, match="'unregistered:thing'.*prefix 'unregistered'.*xlvlm.aliases"):
        resolve_alias("unregistered:thing")


def test_a_registered_prefix_resolves(monkeypatch, tmp_path):
    from xlvlm.models import registry

    monkeypatch.setattr(registry, "_RESOLVERS", dict(registry._RESOLVERS))
    register_alias("mine", lambda name: tmp_path / name)
    assert resolve_alias("mine:a") == str(tmp_path / "a")
    with pytest.raises(ValueError):
        register_alias("a:b", str)


def declared_aliases() -> dict[str, str]:
    """pyproject.toml's entry points of the alias group: what an install of xlvlm declares."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["entry-points"][ALIAS_GROUP]


def write_dist_info(folder: Path, name: str, points: dict[str, str]) -> None:
    """An installed distribution's metadata in ``folder`` (a sys.path entry) declaring ``points``."""
    info = folder / f"{name}-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n")
    lines = [f"[{ALIAS_GROUP}]", *(f"{key} = {value}" for key, value in points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_xlvlm_declares_the_organism_prefix():
    assert declared_aliases() == {"organism": "xlvlm.organism:path"}


def test_organism_names_load_without_importing_the_organism_first(tmp_path):
    """The first organism: name loads the declared entry point, in a process where nothing
    imported xlvlm.organism (models names it nowhere: tests/test_layers.py checks that)."""
    write_dist_info(tmp_path, "xlvlm_declared", declared_aliases())
    code = ("import sys\n"
            "from xlvlm.models.registry import resolve_alias\n"
            "assert 'xlvlm.organism' not in sys.modules\n"
            "print(resolve_alias('organism:original'))\n"
            "assert 'xlvlm.organism' in sys.modules\n")
    src = Path(xlvlm.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": f"{src}:{tmp_path}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(xlvlm.organism.path("original"))


def test_another_package_declares_its_own_prefix(monkeypatch, tmp_path):
    from xlvlm.models import registry

    (tmp_path / "shipped_models.py").write_text("def folder(name):\n    return '/models/' + name\nNOT_A_FUNCTION = 3\n")
    write_dist_info(tmp_path, "shipped_models", {"mine": "shipped_models:folder",
                                                 "broken": "shipped_models:NOT_A_FUNCTION"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_RESOLVERS", {})
    assert {"mine", "broken"} <= set(registry.aliases())
    assert resolve_alias("mine:a") == "/models/a"
    with pytest.raises(XlvlmError, match="'broken'.*shipped_models:NOT_A_FUNCTION"):
        resolve_alias("broken:a")
