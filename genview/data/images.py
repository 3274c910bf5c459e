"""Opening images the way every stage does: verified, orientation applied, converted to 8-bit RGB."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


# Modes holding more than 8 bits per sample: PIL's own convert("RGB") clips them instead of rescaling.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": None, "F": None}


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        top = _WIDE_MODES[image.mode] or max(float(values.max()), 1.0)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as image viewers show them, instead of whatever colour they hide.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` fully and return an 8-bit RGB image (greyscale, palette, CMYK and 16-bit accepted)."""
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)


def image_problem(path: str | os.PathLike) -> str | None:
    """Return why ``path`` cannot be used as an image, or None when it decodes completely."""
    try:
        if os.path.getsize(path) == 0:
            return "zero-byte file"
        load_rgb(path)
    except FileNotFoundError:
        return "missing file"
    except UnidentifiedImageError:
        return "not an image (cannot identify image format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # PIL reports truncated and corrupt data as OSError/SyntaxError; keep its wording, it names the cause.
        return f"unreadable image: {error}"
    return None
