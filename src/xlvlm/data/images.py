"""Image loading with one-line errors: every image the package reads goes through :func:`load_image`.

Images come from users' data and may be hostile: a missing file, a truncated or non-image
file, or a "decompression bomb" (a tiny PNG that claims 20000 x 20000 pixels and would take
gigabytes to decode). Each is an :class:`XlvlmError` naming the file, which ``--skip-bad``
(:func:`xlvlm.data.check_images`) turns into a skipped sample.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError

from xlvlm.errors import XlvlmError

# The largest image accepted, in pixels (width x height): Pillow's own decompression-bomb
# threshold (89,478,485 pixels, e.g. 9459 x 9459, 256 MiB as RGB), but as an error where Pillow
# only warns up to twice that. Model processors shrink images to a few hundred pixels a side,
# so nothing real comes near it.
MAX_IMAGE_PIXELS = 89_478_485

# Library calls and most commands have no skip option: the advice names the one that does.
_SKIP_HINT = "or leave the sample out (xlvlm extract --skip-bad skips such samples)"


_SIZE_ADVICE = f"downscale it {_SKIP_HINT}"


def _too_large(label, width: int, height: int, limit: int | None = None, advice: str = _SIZE_ADVICE) -> XlvlmError:
    limit = MAX_IMAGE_PIXELS if limit is None else limit
    return XlvlmError(f"{label}: image too large ({width} x {height} pixels, the limit is {limit:,}); {advice}")


class EncodedImage:
    """An image file's bytes kept where they live (a row of a dataset) and read when needed: the
    ``image`` of a sample whose data stores its images inside it (``hf:`` parquet, arrow).

    ``label`` names it in stores and messages; ``read()`` returns the encoded bytes (PNG, JPEG,
    ...) or raises a one-line XlvlmError. Only the label is held, so a list of such samples stays
    small however large the images are; :func:`load_image` decodes it with every file's checks.
    """

    __slots__ = ("label", "_read")

    def __init__(self, label: str, read: Callable[[], bytes]):
        self.label = label
        self._read = read

    def read(self) -> bytes:
        return self._read()

    def __repr__(self) -> str:
        return f"EncodedImage({self.label!r})"


def image_sha256(image: Image.Image) -> str:
    """SHA-256 of an in-memory image's content: its mode, size and pixel bytes (two images
    with the same pixels share it, whatever file they came from)."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def image_label(image) -> str:
    """What a store's metadata records for a sample's image: a path as given, or for an
    in-memory PIL image ``"<PIL.Image 64x48 RGB sha256:0123456789abcdef>"`` (size, mode and
    the first 16 hex digits of :func:`image_sha256`)."""
    if isinstance(image, Image.Image):
        return f"<PIL.Image {image.width}x{image.height} {image.mode} sha256:{image_sha256(image)[:16]}>"
    if isinstance(image, EncodedImage):
        return image.label
    return str(image)


def image_digest(image) -> str | None:
    """The resume key's view of an image: the SHA-256 of a file's bytes or of an
    :class:`EncodedImage`'s bytes (the same value for the same file, wherever it is stored), of
    an in-memory PIL image's pixels (:func:`image_sha256`); None when it cannot be read (such a
    sample is skipped with --skip-bad)."""
    from xlvlm.io import sha256_file

    if isinstance(image, Image.Image):
        return image_sha256(image)
    try:
        if isinstance(image, EncodedImage):
            return hashlib.sha256(image.read()).hexdigest()
        return sha256_file(image)
    except (XlvlmError, OSError, TypeError, ValueError):
        return None


def load_image(path: str | Path | Image.Image | EncodedImage) -> Image.Image:
    """Open an image as RGB, fully decoded (so a truncated file fails here, not later). A PIL
    image (a notebook's in-memory sample) is size-checked and converted to an RGB copy; an
    :class:`EncodedImage` is read and decoded as a file is."""
    if isinstance(path, EncodedImage):
        return _decode(io.BytesIO(path.read()), path.label, MAX_IMAGE_PIXELS, formats=None,
                       advice=f"replace it {_SKIP_HINT}", size_advice=_SIZE_ADVICE)
    if isinstance(path, Image.Image):
        width, height = path.size
        if width * height > MAX_IMAGE_PIXELS:
            raise _too_large(image_label(path), width, height)
        return path.convert("RGB")
    path = Path(path)
    if not path.is_file():
        raise XlvlmError(f"{path}: image not found; check the 'image' field or the image root")
    return _decode(path, path, MAX_IMAGE_PIXELS, formats=None, advice=f"replace it {_SKIP_HINT}",
                   size_advice=_SIZE_ADVICE)


#: The formats an uploaded image may have (what a browser sends); Pillow's rarer decoders stay shut.
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
#: The largest upload accepted, in bytes (a 64 x 64 easy-VQA image is ~1 KB, a phone photo ~5 MB).
MAX_UPLOAD_BYTES = 16 * 2**20


def load_image_bytes(data: bytes, label: str = "upload", max_bytes: int = MAX_UPLOAD_BYTES,
                     max_pixels: int | None = None) -> Image.Image:
    """An uploaded file's bytes as a fully decoded RGB image, or a one-line XlvlmError naming
    ``label``: more than ``max_bytes``, more than ``max_pixels`` (default MAX_IMAGE_PIXELS; the
    size is read from the header, before decoding), not one of UPLOAD_FORMATS, or corrupt."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise XlvlmError(f"{label}: expected the file's bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise XlvlmError(f"{label}: file too large ({len(data):,} bytes, the limit is {max_bytes:,}); "
                         f"upload a smaller image")
    if not data:
        raise XlvlmError(f"{label}: empty file; upload an image (PNG, JPEG, GIF, BMP or WebP)")
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    return _decode(io.BytesIO(bytes(data)), label, limit, formats=UPLOAD_FORMATS,
                   advice="upload a PNG, JPEG, GIF, BMP or WebP image", size_advice="upload a smaller image")


#: The largest figure of a run folder that the report embeds and the server serves (a browser
#: decodes it): a figure of xlvlm is a few megapixels.
MAX_FIGURE_PIXELS = 32 * 2**20
MAX_FIGURE_BYTES = MAX_UPLOAD_BYTES


def checked_figure(path: str | Path, max_bytes: int = MAX_FIGURE_BYTES, max_pixels: int = MAX_FIGURE_PIXELS) -> bytes:
    """The bytes of a PNG figure from a run folder, checked as an upload is before a page may
    show it: at most ``max_bytes`` on disk, a real PNG, at most ``max_pixels`` by its header,
    and decodable in full (so a tiny file that declares 20000 x 20000 is refused before a
    browser has to decode it). A one-line XlvlmError naming the file otherwise."""
    import io

    path = Path(path)
    redo = "rerun the stage that wrote it"
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise XlvlmError(f"{path}: figure too large ({size:,} bytes, the limit is {max_bytes:,}); {redo}")
        data = path.read_bytes()
    except OSError as exc:
        raise XlvlmError(f"{path}: unreadable figure ({exc.strerror or type(exc).__name__}); {redo}") from None
    _decode(io.BytesIO(data), path, max_pixels, formats=("PNG",), advice=f"only PNG figures are shown; {redo}",
            size_advice=redo)
    return data


def _decode(source, label, max_pixels: int, formats, advice: str, size_advice: str) -> Image.Image:
    """Open ``source`` (a path or a file object), check its pixel count from the header, decode it
    fully and return it as RGB; every failure is one line naming ``label``."""
    try:
        with warnings.catch_warnings():
            # The size is checked below, as an error; Pillow's warning for it would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > max_pixels:
                    raise _too_large(label, width, height, max_pixels, size_advice)
                image.load()
                return image.convert("RGB")
    except Image.DecompressionBombError:  # Pillow refuses to open past twice its own limit
        raise XlvlmError(f"{label}: image too large (more than twice the limit of {MAX_IMAGE_PIXELS:,} pixels); "
                         f"{size_advice}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise XlvlmError(f"{label}: corrupt or unreadable image ({exc}); {advice}") from None
