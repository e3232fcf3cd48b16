"""Image loading with one-line errors: every image the package reads goes through :func:`load_image`.

Images come from users' data and may be hostile: a missing file, a truncated or non-image
file, or a "decompression bomb" (a tiny PNG that claims 20000 x 20000 pixels and would take
gigabytes to decode). Each is an :class:`XlvlmError` naming the file, which ``--skip-bad``
(:func:`xlvlm.data.check_images`) turns into a skipped sample.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from xlvlm.errors import XlvlmError

# The largest image accepted, in pixels (width x height): Pillow's own decompression-bomb
# threshold (89,478,485 pixels, e.g. 9459 x 9459, 256 MiB as RGB), but as an error where Pillow
# only warns up to twice that. Model processors shrink images to a few hundred pixels a side,
# so nothing real comes near it.
MAX_IMAGE_PIXELS = 89_478_485

# Library calls and most commands have no skip option: the advice names the one that does.
_SKIP_HINT = "or leave the sample out (xlvlm extract --skip-bad skips such samples)"


def _too_large(path, width: int, height: int) -> XlvlmError:
    return XlvlmError(f"{path}: image too large ({width} x {height} pixels, the limit is {MAX_IMAGE_PIXELS:,}); "
                      f"downscale it {_SKIP_HINT}")


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
    return str(image)


def load_image(path: str | Path | Image.Image) -> Image.Image:
    """Open an image as RGB, fully decoded (so a truncated file fails here, not later). A PIL
    image (a notebook's in-memory sample) is size-checked and converted to an RGB copy."""
    if isinstance(path, Image.Image):
        width, height = path.size
        if width * height > MAX_IMAGE_PIXELS:
            raise _too_large(image_label(path), width, height)
        return path.convert("RGB")
    path = Path(path)
    if not path.is_file():
        raise XlvlmError(f"{path}: image not found; check the 'image' field or the image root")
    try:
        with warnings.catch_warnings():
            # The size is checked below, as an error; Pillow's warning for it would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size  # from the header: nothing decoded yet
                if width * height > MAX_IMAGE_PIXELS:
                    raise _too_large(path, width, height)
                image.load()
                return image.convert("RGB")
    except Image.DecompressionBombError:  # Pillow refuses to open past twice its own limit
        raise XlvlmError(f"{path}: image too large (more than twice the limit of {MAX_IMAGE_PIXELS:,} pixels); "
                         f"downscale it {_SKIP_HINT}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise XlvlmError(f"{path}: corrupt or unreadable image ({exc}); replace it {_SKIP_HINT}") from None
