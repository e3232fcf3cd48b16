"""Images uploaded to the Play page: size and dimensions bounded, decoded once, kept in memory.

An upload is the raw request body (the page sends the file as it is, no multipart form): at most
:data:`MAX_UPLOAD_BYTES`, a PNG, JPEG, GIF or WebP of at most :data:`MAX_SIDE` pixels a side,
checked from the header before the pixels are decoded (a small file can declare a huge image).
It is kept as an RGB image under a random token (the newest :data:`MAX_UPLOADS`), never
written to disk and never into RUN_DIR; the page shows it back as a re-encoded PNG thumbnail.
"""

from __future__ import annotations

import io
import secrets
import threading
from collections import OrderedDict

from xlvlm.errors import XlvlmError

MAX_UPLOAD_BYTES = 8 * 2**20
MAX_SIDE = 4096
MAX_UPLOADS = 32
FORMATS = ("PNG", "JPEG", "GIF", "WEBP")


class UploadTooLarge(XlvlmError):
    """An upload over MAX_UPLOAD_BYTES."""


def decode_upload(data: bytes):
    """The uploaded bytes as an RGB PIL image, or a one-line XlvlmError saying what is wrong."""
    from PIL import Image

    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"upload of {len(data)} bytes; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB")
    if not data:
        raise XlvlmError("empty upload; choose an image file (PNG, JPEG, GIF or WebP)")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            if max(width, height) > MAX_SIDE or min(width, height) < 1:
                raise XlvlmError(f"image of {width}x{height} pixels; the limit is {MAX_SIDE} a side")
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise XlvlmError(f"not an image this server reads ({type(exc).__name__}); upload a PNG, JPEG, GIF or "
                         f"WebP file") from None


class Uploads:
    """The newest uploaded images by token (thread-safe: requests run on a thread pool)."""

    def __init__(self, limit: int = MAX_UPLOADS):
        self.limit = limit
        self._images: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._images[token] = image
            while len(self._images) > self.limit:
                self._images.popitem(last=False)
        return token

    def get(self, token: str):
        with self._lock:
            image = self._images.get(str(token))
        if image is None:
            raise XlvlmError("unknown upload (the server keeps the newest uploads only, in memory); upload it again")
        return image
