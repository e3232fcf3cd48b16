"""The adapter registry: which adapter serves which ``config.model_type``.

Each family is one module under ``xlvlm/models/`` whose adapter class is decorated with
:func:`register`; ``load_vlm``, the tests and ``docs/models.md`` all read the family list from
here, so a family is written down once. Adding a family: one module with a registered adapter
(often an empty subclass of :class:`~xlvlm.models.base.VLM`) plus a tiny builder under
``xlvlm.testing`` named like its ``model_type``.

Model-name aliases live here too: ``prefix:name`` strings that :func:`xlvlm.load_vlm` resolves
to a folder. A package that ships models declares its prefix as an entry point of the group
``xlvlm.aliases`` (:data:`ALIAS_GROUP`) in its ``pyproject.toml``, pointing at its resolver:
xlvlm's own ``organism = "xlvlm.organism:path"``. The first ``organism:`` name loads that entry
point, so ``load_vlm("organism:original")`` works without the caller importing anything, and
``models`` names no package above it, not even as a string. :func:`register_alias` adds a
prefix at run time (a script, a test).
"""

from __future__ import annotations

import importlib
import importlib.metadata
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

#: The entry point group that maps a prefix to its resolver (``pyproject.toml``:
#: ``[project.entry-points."xlvlm.aliases"]``).
ALIAS_GROUP = "xlvlm.aliases"

_RESOLVERS: dict[str, Callable[[str], str | Path]] = {}


def register_alias(prefix: str, resolver: Callable[[str], str | Path]) -> None:
    """Resolve ``f"{prefix}:{name}"`` with ``resolver(name)`` (a folder or hub id; raise XlvlmError if unknown)."""
    if not prefix or ":" in prefix:
        raise ValueError(f"alias prefix {prefix!r}: a non-empty name without ':'")
    _RESOLVERS[prefix] = resolver


def _declared_aliases() -> dict[str, importlib.metadata.EntryPoint]:
    """The prefixes installed packages declare in :data:`ALIAS_GROUP`, by name."""
    return {point.name: point for point in importlib.metadata.entry_points(group=ALIAS_GROUP)}


def aliases() -> list[str]:
    """Every prefix that resolves (registered, or declared by an installed package)."""
    return sorted(set(_RESOLVERS) | set(_declared_aliases()))


def _resolver(prefix: str) -> Callable[[str], str | Path] | None:
    """The resolver of ``prefix``, loading its entry point on first use; None for no such prefix."""
    if prefix not in _RESOLVERS:
        point = _declared_aliases().get(prefix)
        if point is None:
            return None
        resolver = point.load()
        if not callable(resolver):
            raise XlvlmError(f"model-name prefix {prefix!r}: the entry point {point.value!r} of group "
                             f"{ALIAS_GROUP!r} is not a function of the name; fix the package that declares it")
        _RESOLVERS.setdefault(prefix, resolver)
    return _RESOLVERS[prefix]


def resolve_alias(name: str) -> str:
    """``name`` with its ``prefix:`` resolved (``organism:original`` -> its folder); a folder or a hub
    id (no ':') as given; XlvlmError for an unknown prefix."""
    prefix, sep, rest = name.partition(":")
    if not (sep and prefix):
        return name
    resolver = _resolver(prefix)
    if resolver is not None:
        return str(resolver(rest))
    if Path(name).exists():
        return name
    raise XlvlmError(f"model {name!r}: no folder of that name and no model-name prefix {prefix!r} (known: "
                     f"{', '.join(aliases()) or 'none'}); packages declare prefixes in the entry point group "
                     f"{ALIAS_GROUP!r}: reinstall the one that should provide it (xlvlm: pip install -e .)")
