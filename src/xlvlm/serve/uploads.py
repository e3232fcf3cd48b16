"""Images uploaded to the Play page, kept in memory under a random token.

An upload is the raw request body (the page sends the file as it is, no multipart form). The
server stops reading past :data:`MAX_UPLOAD_BYTES` (answering 413), then decodes it with
:func:`xlvlm.data.images.load_image_bytes`, the playground's own check (format, bytes, and the
pixel count read from the header before decoding: here at most :data:`MAX_UPLOAD_PIXELS`). The
image is kept as RGB under a random token (the newest :data:`MAX_UPLOADS`), never written to
disk and never into RUN_DIR; the page shows it back as a re-encoded PNG thumbnail.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from xlvlm.data.images import MAX_UPLOAD_BYTES, load_image_bytes
from xlvlm.errors import XlvlmError

MAX_UPLOADS = 32
# Tighter than Pillow's default (89M): a page has no use for more, and each upload stays in memory.
MAX_UPLOAD_PIXELS = 4096 * 4096


class UploadTooLarge(XlvlmError):
    """An upload over MAX_UPLOAD_BYTES."""


def decode_upload(data: bytes):
    """The uploaded bytes as an RGB PIL image, or a one-line XlvlmError saying what is wrong."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"upload of {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    return load_image_bytes(data, "upload", MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS)


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
