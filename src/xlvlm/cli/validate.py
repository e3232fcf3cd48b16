"""Argument types of the command line: each checks one kind of value and says what is wrong.

Used as ``type=`` of argparse options, so a bad value is refused when the command line is read,
before any data or model is loaded, with one line naming the option. ``--config`` values go
through the same functions (:mod:`xlvlm.cli.config`). Each returns the parsed value or raises
:class:`argparse.ArgumentTypeError`. Nothing here imports torch: the command line is read in
well under a second.
"""

from __future__ import annotations

import math
import re
from argparse import ArgumentTypeError

from xlvlm.steer.settings import MAX_ALPHA  # the bound, shared with the server's checks

MAX_SEED = 2**32 - 1  # numpy's legacy generator takes seeds in [0, 2**32); torch and random take these too


def _integer(text) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ArgumentTypeError(f"expected a whole number, not {text!r}") from None


def _real(text) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def positive_int(text) -> int:
    """A count such as a batch size or a number of concepts: at least 1."""
    value = _integer(text)
    if value < 1:
        raise ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def index(text) -> int:
    """A position such as a concept index: 0 or more."""
    value = _integer(text)
    if value < 0:
        raise ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def indices(text) -> list[int]:
    """A comma list of positions (0 or more), e.g. an SAE's feature indices: ``12,3400``."""
    parts = [part for part in str(text).split(",") if part.strip()]
    if not parts:
        raise ArgumentTypeError(f"expected a comma list of indices, not {text!r}")
    return [index(part) for part in parts]


def seed(text) -> int:
    value = _integer(text)
    if not 0 <= value <= MAX_SEED:
        raise ArgumentTypeError(f"must be between 0 and 2**32 - 1 (what every random generator used accepts), "
                                f"not {value}")
    return value


def alpha(text) -> float:
    """A steering or shift strength: finite, at most MAX_ALPHA in magnitude."""
    value = _real(text)
    if abs(value) > MAX_ALPHA:
        raise ArgumentTypeError(f"must be at most {MAX_ALPHA:g} in magnitude (larger values swamp every hidden "
                                f"state and overflow float16), not {text!r}")
    return value


def alphas(text) -> list[float]:
    """A comma list of alphas, at least one."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not parts:
        raise ArgumentTypeError("expected a comma list of numbers such as 1,2,4, not an empty list")
    return [alpha(part) for part in parts]


def names(text) -> str:
    """A comma list (layers, methods) with at least one item; returned as given."""
    if not [part for part in str(text).split(",") if part.strip()]:
        raise ArgumentTypeError(f"expected a comma list with at least one item, not {text!r}")
    return str(text)


def positive_float(text) -> float:
    """A duration or size: finite and above 0."""
    value = _real(text)
    if value <= 0:
        raise ArgumentTypeError(f"must be above 0, not {value:g}")
    return value


def fraction(text) -> float:
    """A share between 0 and 1 (inclusive)."""
    value = _real(text)
    if not 0 <= value <= 1:
        raise ArgumentTypeError(f"must be between 0 and 1, not {value:g}")
    return value


def points(text) -> float:
    """Percentage points between 0 and 100 (inclusive), returned as a fraction (2 -> 0.02)."""
    value = _real(text)
    if not 0 <= value <= 100:
        raise ArgumentTypeError(f"must be between 0 and 100 points, not {value:g}")
    return value / 100


def path(text) -> str:
    """A file, folder, hub id or data spec. ``${VAR}`` in such options of a --config file comes
    from the environment (and nowhere else)."""
    text = str(text)
    if not text.strip():
        raise ArgumentTypeError("must not be empty")
    if "\x00" in text:
        raise ArgumentTypeError("contains a NUL character")
    return text


# torch's device types (c10/core/DeviceType.h), so that a typo is refused without importing
# torch at parse time; a test compares this pattern with torch.device itself.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "meta", "hip", "hpu", "mtia", "xla", "ipu", "lazy", "vulkan", "ve",
                "maia", "fpga", "opengl", "opencl", "ideep", "privateuseone")
_DEVICE = re.compile(rf"(?:{'|'.join(DEVICE_TYPES)})(?::(?:0|[1-9][0-9]*))?")


def device(text) -> str:
    """A torch device string: cpu, cuda, cuda:1, mps, ..."""
    if not _DEVICE.fullmatch(str(text)):
        raise ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:1, mps, ...")
    return str(text)
