"""Image loading with one-line errors."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from xlvlm.errors import XlvlmError


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, fully decoded (so a truncated file fails here, not later)."""
    path = Path(path)
    if not path.is_file():
        raise XlvlmError(f"{path}: image not found; check the 'image' field or the image root")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise XlvlmError(f"{path}: corrupt or unreadable image ({exc}); replace it or pass --skip-bad")
