"""Progress of long work: labelled bars on a terminal, nothing that clutters a log elsewhere, and
one line per stage.

A bar redraws itself with carriage returns and, nested, cursor-up codes (``ESC[A``): fine on a
terminal, noise in a log file or CI output. So bars are drawn only when stderr is a terminal or
in a notebook (``XLVLM_PROGRESS=1`` forces them, ``XLVLM_PROGRESS=0`` hides them); stage lines
(:func:`announce`) are printed either way.
"""

from __future__ import annotations

import os
import sys


def bars_shown() -> bool:
    """Whether progress bars are drawn here: stderr is a terminal, or a notebook runs the code."""
    forced = os.environ.get("XLVLM_PROGRESS", "")
    if forced in ("0", "1"):
        return forced == "1"
    return "ipykernel" in sys.modules or sys.stderr.isatty()


def bar(iterable=None, *, desc: str, enabled: bool = True, **options):
    """A tqdm bar labelled ``desc`` (what runs: ``"extract yes-questions"``, not ``"extract"``),
    disabled unless ``enabled`` and :func:`bars_shown`. ``options`` go to tqdm."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not (enabled and bars_shown()), **options)


def announce(message: str, enabled: bool = True) -> None:
    """One line on stderr saying which stage starts (flushed: a log shows it at once)."""
    if enabled:
        print(f"xlvlm: {message}", file=sys.stderr, flush=True)
