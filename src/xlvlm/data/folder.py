"""Every image in a folder, each with the same prompt.

Files are found by extension (case-insensitive): ``.jpg .jpeg .png .bmp .gif .webp .tif
.tiff``; hidden files are skipped. A sample's ``id`` is the image's path relative to the
folder (POSIX separators, extension kept, so ``a.jpg`` and ``a.png`` stay distinct); samples
are sorted by id.
"""

from __future__ import annotations

from pathlib import Path

from xlvlm.data._common import DEFAULT_CAPTION_PROMPT
from xlvlm.errors import XlvlmError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_folder(path: str | Path, prompt: str = DEFAULT_CAPTION_PROMPT, recursive: bool = False) -> list[dict]:
    """One sample per image file in ``path`` (and its sub-folders when ``recursive``)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise XlvlmError(f"{folder}: image folder not found")
    folder = folder.resolve()
    files = folder.rglob("*") if recursive else folder.iterdir()
    samples = []
    for file in files:
        relative = file.relative_to(folder)
        if file.suffix.lower() not in IMAGE_EXTENSIONS or any(part.startswith(".") for part in relative.parts):
            continue
        if file.is_file():
            samples.append({"id": relative.as_posix(), "image": str(file), "prompt": prompt})
    if not samples:
        raise XlvlmError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder")
    return sorted(samples, key=lambda s: s["id"])
