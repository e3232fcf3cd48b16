"""Images uploaded to the Play page, kept in memory under a random token.

An upload is the raw request body (the page sends the file as it is, no multipart form). The
server stops reading past :data:`MAX_UPLOAD_BYTES` (answering 413), then decodes it with
:func:`xlvlm.data.images.load_image_bytes`, the playground's own check (format, bytes, and the
pixel count read from the header before decoding: here at most :data:`MAX_UPLOAD_PIXELS`). The
image is kept as RGB under a random token (the newest ones, at most :data:`MAX_UPLOADS` of them
and :data:`MAX_UPLOAD_CACHE_BYTES` of decoded pixels in all), never written to disk and never
into RUN_DIR; the page shows it back as a re-encoded PNG thumbnail.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from xlvlm.data.images import MAX_UPLOAD_BYTES, load_image_bytes
from xlvlm.errors import XlvlmError

MAX_UPLOADS = 32
#: Decoded pixels kept in memory for all uploads together (an image costs width x height x 3
#: bytes however small its file: a 49 KB PNG of 4096 x 4096 decodes to 48 MiB).
MAX_UPLOAD_CACHE_BYTES = 256 * 2**20
# Tighter than Pillow's default (89M): a page has no use for more, and each upload stays in memory.
MAX_UPLOAD_PIXELS = 4096 * 4096


class UploadTooLarge(XlvlmError):
    """An upload over MAX_UPLOAD_BYTES."""


def decode_upload(data: bytes):
    """The uploaded bytes as an RGB PIL image, or a one-line XlvlmError saying what is wrong."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"upload of {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    return load_image_bytes(data, "upload", MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS)


def decoded_bytes(image) -> int:
    """What a decoded PIL image holds in memory: width x height x bytes per pixel."""
    return image.width * image.height * len(image.getbands())


class Uploads:
    """The newest uploaded images by token (thread-safe: requests run on a thread pool): at most
    ``limit`` images and ``max_bytes`` of decoded pixels; the oldest go first."""

    def __init__(self, limit: int = MAX_UPLOADS, max_bytes: int = MAX_UPLOAD_CACHE_BYTES):
        self.limit, self.max_bytes = limit, max_bytes
        self._images: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0  # decoded bytes held now

    def add(self, image) -> str:
        size = decoded_bytes(image)
        if size > self.max_bytes:
            raise UploadTooLarge(f"upload of {image.width} x {image.height} pixels decodes to {size:,} bytes; "
                                 f"the server keeps at most {self.max_bytes:,}; upload a smaller image")
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._images[token] = image
            self.bytes += size
            while len(self._images) > self.limit or self.bytes > self.max_bytes:
                _, dropped = self._images.popitem(last=False)
                self.bytes -= decoded_bytes(dropped)
        return token

    def get(self, token: str):
        with self._lock:
            image = self._images.get(str(token))
        if image is None:
            raise XlvlmError("unknown upload (the server keeps the newest uploads only, in memory); upload it again")
        return image
