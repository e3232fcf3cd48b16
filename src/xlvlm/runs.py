"""Reading a run folder: the names of what stages write into it, and the one reader of them.

A run folder (the ``--out`` of stages, e.g. ``runs/demo``) holds, anywhere below it, stage
results (:data:`RESULT_FILE`, ``{"stage", "version", ...}``) with the files a stage writes
beside them, feature stores (folders holding :data:`MANIFEST`) and concept dictionaries
(folders holding :data:`DICTIONARY_META` and :data:`DICTIONARY_TENSORS`). The stages that write
them (extract, concepts) take these names from here; the report and ``xlvlm serve`` read a run
only through this module.

A run folder may come from someone else, so its files are untrusted: only regular files that
really lie under the run folder are read (:func:`inside`: not a link, not through one), JSON
through one bounded reader (at most :data:`MAX_JSON_BYTES`), and unfinished output units are
skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from xlvlm.errors import XlvlmError
from xlvlm.io import RESULT_FILE, check_outputs, read_untrusted_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"                 # a feature store's folder holds it
DICTIONARY_META = "concepts.json"          # a concept dictionary's folder holds both
DICTIONARY_TENSORS = "concepts.safetensors"
MAX_JSON_BYTES = 64 * 2**20                # a JSON file of a run larger than this is not read

__all__ = ["RESULT_FILE", "MANIFEST", "DICTIONARY_META", "DICTIONARY_TENSORS", "MAX_JSON_BYTES", "inside",
           "load_result", "read_json", "stage_results", "walk_run"]


def inside(path: Path, root: Path) -> bool:
    """A regular file (not a link) that really lies under ``root``: safe to read."""
    try:
        return (not path.is_symlink() and path.is_file()
                and path.resolve().is_relative_to(root.resolve()))
    except OSError:
        return False


def _read_json(path: Path) -> object:
    """The one way a run's JSON is read: :func:`xlvlm.io.read_untrusted_json` (size, depth and
    number limits; a bad file is a one-line XlvlmError naming it). Raises OSError too."""
    return read_untrusted_json(path, max_bytes=MAX_JSON_BYTES)


def load_result(path: Path) -> dict:
    """A stage result (a JSON object), or a one-line XlvlmError saying to rerun the stage."""
    try:
        data = _read_json(path)
    except (OSError, ValueError, RecursionError) as exc:
        raise XlvlmError(f"{path}: unreadable results ({exc}); rerun the stage that wrote it") from None
    if not isinstance(data, dict):
        raise XlvlmError(f"{path}: malformed results (expected a JSON object); rerun the stage that wrote it")
    return data


def read_json(path: Path, root: Path) -> object:
    """A JSON file of the run inside ``root`` (links followed, they must stay inside), or None
    when it is missing, unreadable, too large or outside."""
    try:
        if not path.resolve().is_relative_to(Path(root).resolve()):
            return None
        return _read_json(path)
    except (OSError, ValueError, RecursionError, XlvlmError):
        return None


def stage_results(root: Path, on_error=None) -> list[Path]:
    """The finished stage results (``result.json``) under ``root`` that may be read: regular files
    inside it (links are left out, with a warning), not in an unfinished rerun's work folder.
    A result whose listed outputs do not match raises its one-line XlvlmError, or, with
    ``on_error(path, error)`` given, is passed to it and left out (a reader that shows the rest)."""
    found = []
    for path in sorted(root.rglob(RESULT_FILE)):
        if not inside(path, root):
            log.warning("%s: left out of the report (a link or not a regular file inside %s)", path, root)
            continue
        try:
            if not check_outputs(path):  # inside an unfinished rerun's work folder
                continue
        except XlvlmError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        found.append(path)
    return found


def walk_run(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(feature store folders, dictionary folders, other .safetensors files) under ``root``.
    Links to folders are not followed; a store's or a dictionary's folder is not searched further."""
    stores, dictionaries, files = [], [], []
    for folder, subfolders, names in os.walk(root, followlinks=False):
        here = Path(folder)
        subfolders.sort()
        if MANIFEST in names:
            stores.append(here)
            subfolders[:] = []
        elif DICTIONARY_META in names:
            dictionaries.append(here)
            subfolders[:] = []
        else:
            files.extend(here / n for n in sorted(names) if n.endswith(".safetensors"))
    return stores, dictionaries, files
