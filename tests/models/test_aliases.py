"""Model-name aliases: ``organism:`` names resolve through the registry the organism fills in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import xlvlm
from xlvlm.errors import XlvlmError
from xlvlm.models.registry import ALIAS_PLUGINS, register_alias, resolve_alias


def test_organism_names_resolve_to_the_shipped_folders():
    assert resolve_alias("organism:finetuned") == str(xlvlm.organism.path("finetuned"))
    with pytest.raises(XlvlmError, match="unknown organism 'nope'"):
        resolve_alias("organism:nope")


def test_other_names_pass_through():
    for name in ("llava-hf/llava-1.5-7b-hf", "runs/organism/original", "unregistered:thing"):
        assert resolve_alias(name) == name


def test_a_registered_prefix_resolves(monkeypatch, tmp_path):
    from xlvlm.models import registry

    monkeypatch.setattr(registry, "_RESOLVERS", dict(registry._RESOLVERS))
    register_alias("mine", lambda name: tmp_path / name)
    assert resolve_alias("mine:a") == str(tmp_path / "a")
    with pytest.raises(ValueError):
        register_alias("a:b", str)


def test_organism_names_load_without_importing_the_organism_first():
    """load_vlm imports the plugin module by name on the first organism: name (models never
    imports xlvlm.organism in its code; tests/test_layers.py checks that)."""
    assert ALIAS_PLUGINS["organism"] == "xlvlm.organism"
    # Whatever imported the organism so far is forgotten: only the plugin entry can bring it back.
    code = ("import sys\n"
            "from xlvlm.models.registry import _RESOLVERS, resolve_alias\n"
            "_RESOLVERS.pop('organism', None)\n"
            "sys.modules.pop('xlvlm.organism', None)\n"
            "print(resolve_alias('organism:original'))\n"
            "assert 'xlvlm.organism' in sys.modules\n")
    src = Path(xlvlm.__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(xlvlm.organism.path("original"))
