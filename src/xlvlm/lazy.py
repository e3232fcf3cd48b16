"""Names whose objects are imported on first use, so that reading a name costs no import.

:class:`Registry`: a package's strategies by name (``"snmf"`` -> ``SemiNMF``), each given as
where it lives, ``"package.module:attribute"``. Its names are read without importing anything
(the command line's choices, ``xlvlm --help``, need neither torch nor transformers); an object is
imported when it is looked up. :func:`lazy_exports`: the PEP 562 hooks of a package whose public
names live in its heavy submodules.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping, MutableMapping


def _resolve(where: str):
    module, _, attribute = where.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split(".") if attribute else ():
        value = getattr(value, part)
    return value


class Registry(MutableMapping):
    """name -> object, in the order given. An entry is an object, or where it lives
    (``"package.module:attribute"``, imported on its first lookup). ``name in registry``,
    iteration and ``len`` import nothing; ``registry[name]``, ``values()``, ``items()`` import what
    they return. Adding an entry (``registry[name] = obj``) takes an object or a place."""

    def __init__(self, entries: Mapping[str, object] | None = None):
        self._entries: dict[str, object] = dict(entries or {})

    def __getitem__(self, name: str):
        value = self._entries[name]
        if isinstance(value, str):
            value = self._entries[name] = _resolve(value)
        return value

    def __setitem__(self, name: str, value) -> None:
        self._entries[name] = value

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name) -> bool:  # Mapping's would import the entry
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._entries)})"

    def name_of(self, obj) -> str | None:
        """The name ``obj`` is registered under, or None. It works before the entry is imported
        (the object's module and qualified name against the place given), so a class may ask for
        its own name while its module is being imported."""
        where = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
        return next((name for name, value in self._entries.items() if value is obj or value == where), None)


def lazy_exports(package: str, exports: Mapping[str, str]):
    """``(__getattr__, __dir__)`` for ``package``'s ``__init__`` (PEP 562): a public name of
    ``exports`` (name -> the module that defines it) is imported from there on first access, any
    other name from the package's submodule of that name (``xlvlm.steer.vector`` after ``import
    xlvlm.steer``). The value is then kept in the package, so later lookups skip the hook."""
    import sys

    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
