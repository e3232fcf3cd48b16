"""The adapter registry: which adapter serves which ``config.model_type``.

Each family is one module under ``xlvlm/models/`` whose adapter class is decorated with
:func:`register`; ``load_vlm``, the tests and ``docs/models.md`` all read the family list from
here, so a family is written down once. Adding a family: one module with a registered adapter
(often an empty subclass of :class:`~xlvlm.models.base.VLM`) plus a tiny builder under
``xlvlm.testing`` named like its ``model_type``.

Model-name aliases live here too: ``prefix:name`` strings that :func:`xlvlm.load_vlm` resolves
to a folder. A package that ships models fills them in when it is imported: ``xlvlm.organism``
registers ``organism:`` (``organism:original`` -> its folder), so the organism depends on
``models`` and never the reverse (the layer contract in ``.importlinter`` checks it).
:data:`ALIAS_PLUGINS` names, per prefix, the module that registers it, the way a ``pyproject.toml``
entry point names a plugin: ``load_vlm("organism:original")`` works without the caller
importing ``xlvlm.organism``, because the first ``organism:`` name imports that module by its
name. ``models`` holds the name, never the code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xlvlm.errors import XlvlmError

NOT_FAMILY_MODULES = {"base", "registry"}


@dataclass(frozen=True)
class Family:
    """One registered family.

    model_type: the config's ``model_type`` it serves (the registry key, and the name of its
        tiny builder). name: what users call it ("Gemma 3"). examples: hub checkpoints it is
        meant for. auto_class: the transformers Auto class that loads it (None: the adapter
        loads it itself, e.g. remote code). adapter: the class. not_checked: what the tiny
        model leaves unchecked beyond what no tiny model checks (real weights, vision towers,
        tokenizers; docs/models.md).
    """

    model_type: str
    name: str
    adapter: type
    examples: tuple[str, ...] = ()
    auto_class: str | None = "AutoModelForImageTextToText"
    remote_code: bool = False
    not_checked: str = ""


_FAMILIES: dict[str, Family] = {}
_ALL_IMPORTED = False


def register(*model_types: str, name: str, examples: tuple[str, ...] = (),
             auto_class: str | None = "AutoModelForImageTextToText", remote_code: bool = False,
             not_checked: str = ""):
    """Class decorator: serve each of ``model_types`` with the decorated adapter."""

    def decorate(cls):
        for model_type in model_types:
            if model_type in _FAMILIES and _FAMILIES[model_type].adapter is not cls:
                raise RuntimeError(f"model_type {model_type!r} registered twice "
                                   f"({_FAMILIES[model_type].adapter.__name__}, {cls.__name__})")
            _FAMILIES[model_type] = Family(model_type, name, cls, tuple(examples), auto_class, remote_code,
                                           not_checked)
        return cls

    return decorate


def _import_family_modules() -> None:
    """Import every family module once (a module imported directly registers only itself)."""
    global _ALL_IMPORTED
    if _ALL_IMPORTED:
        return
    import xlvlm.models as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in NOT_FAMILY_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    _ALL_IMPORTED = True


def families() -> dict[str, Family]:
    """Every registered family by ``model_type``."""
    _import_family_modules()
    return dict(_FAMILIES)


def family_of(model_type: str) -> Family | None:
    return families().get(model_type)


# ---------------------------------------------------------------------------------------------
# Model-name aliases

#: prefix -> the module that calls ``register_alias(prefix, ...)`` when imported.
ALIAS_PLUGINS = {"organism": "xlvlm.organism"}

_RESOLVERS: dict[str, Callable[[str], str | Path]] = {}


def register_alias(prefix: str, resolver: Callable[[str], str | Path]) -> None:
    """Resolve ``f"{prefix}:{name}"`` with ``resolver(name)`` (a folder or hub id; raise XlvlmError if unknown)."""
    if not prefix or ":" in prefix:
        raise ValueError(f"alias prefix {prefix!r}: a non-empty name without ':'")
    _RESOLVERS[prefix] = resolver


def aliases() -> list[str]:
    """Every prefix that resolves (registered or served by a plugin module)."""
    return sorted(set(_RESOLVERS) | set(ALIAS_PLUGINS))


def resolve_alias(name: str) -> str:
    """``name`` with a known ``prefix:`` resolved (``organism:original`` -> its folder); anything else as given."""
    prefix, sep, rest = name.partition(":")
    if not sep or prefix not in aliases():
        return name  # a folder or a hub id
    if prefix not in _RESOLVERS:
        importlib.import_module(ALIAS_PLUGINS[prefix])
        if prefix not in _RESOLVERS:
            raise XlvlmError(f"{name!r}: {ALIAS_PLUGINS[prefix]} did not register the alias {prefix!r}")
    return str(_RESOLVERS[prefix](rest))
