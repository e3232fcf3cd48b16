"""Settings objects of the stages: one dataclass per stage (``ConceptSettings``,
``ShiftSettings``, ``SweepSettings``, ``ComparisonSettings``) that the command line builds once.

A stage takes ``settings=`` and also its fields as keywords (``run_concepts(store, 3, out,
n_concepts=8)``): :func:`settings_with` puts those keywords into the settings object.
"""

from __future__ import annotations

import dataclasses

from xlvlm.errors import XlvlmError


def settings_with(cls, settings, options: dict, where: str, rest: str | None = None):
    """``settings`` (an instance of the dataclass ``cls``, or None for its defaults) with the
    keyword ``options`` put in. A name that is no field of ``cls`` is a one-line error, or, with
    ``rest``, goes into that dict field (e.g. a method's own options)."""
    if settings is None:
        settings = cls()
    elif not isinstance(settings, cls):
        raise XlvlmError(f"{where}: settings must be a {cls.__name__}, not {type(settings).__name__}")
    if not options:
        return settings
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in options.items() if k in names}
    unknown = {k: v for k, v in options.items() if k not in names}
    if unknown and rest is None:
        raise XlvlmError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}; it takes "
                         f"{', '.join(sorted(names))}")
    if unknown:
        known[rest] = {**getattr(settings, rest), **known.get(rest, {}), **unknown}
    return dataclasses.replace(settings, **known)
