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


class Heartbeat:
    """Progress of long work where no bar is drawn (a log, CI, a notebook's captured output): a
    line each time another ``every`` seconds have passed, with what is done, the elapsed time and
    an estimate of what remains. Work that ends within ``every`` seconds prints nothing, so short
    calls stay quiet; a terminal shows the bar instead.

        beat = Heartbeat("generate", total=4000, unit="samples", enabled=progress)
        for batch in batches:
            ...
            beat.update(done)
    """

    def __init__(self, desc: str, total: int, unit: str, enabled: bool = True, every: float = 30.0,
                 clock=None):
        import time

        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.enabled = enabled and not bars_shown()
        self.clock = clock or time.monotonic
        self.started = self.last = self.clock()

    def update(self, done: int) -> None:
        """``done`` of ``total`` units are finished: a line if ``every`` seconds passed since the last."""
        now = self.clock()
        if not self.enabled or now - self.last < self.every or done <= 0:
            return
        self.last = now
        elapsed = now - self.started
        left = elapsed * (self.total - done) / done
        announce(f"{self.desc}: {done:,}/{self.total:,} {self.unit} after {elapsed:.0f} s (about {left:.0f} s to go)")
