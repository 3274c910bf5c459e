"""Opening images the way every stage does: verified, orientation applied, converted to 8-bit RGB; then as a
[0, 1] float tensor, and the normalisation statistics the networks take it with."""

from __future__ import annotations

import os

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: Normalisation by name (a recipe's ``normalization``): (mean, std) per RGB channel of [0, 1] images.
NORMALIZATION = {"clip": (CLIP_MEAN, CLIP_STD), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}

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
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(path: str | os.PathLike, reduce: int = 1) -> Image.Image:
    """Decode ``path`` fully and return an 8-bit RGB image (greyscale, palette, CMYK and 16-bit accepted).

    ``reduce`` > 1: a JPEG may be decoded up to that factor smaller (see decode_rgb)."""
    with Image.open(path) as image:
        return decode_rgb(image, reduce)


def decode_rgb(image: Image.Image, reduce: int = 1) -> Image.Image:
    """Decode an opened image as load_rgb does. ``reduce`` > 1: a JPEG may be decoded up to that factor smaller
    (PIL's draft mode, DCT scaling: much less work), never below its size divided by ``reduce``; other formats
    decode at full size."""
    if reduce > 1 and image.format == "JPEG":
        image.draft("RGB", (image.width // reduce, image.height // reduce))
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    return _to_rgb(image)


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as decode_rgb returns it (EXIF orientation applied), from its header."""
    width, height = image.size
    swapped = image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)  # transposed or rotated 90 degrees
    return (height, width) if swapped else (width, height)


def to_tensor(image: Image.Image):
    """A PIL image as a float32 tensor (C, H, W) in [0, 1]."""
    # torch here, not at the top: indexing imports this module to verify images, which needs no torch.
    import torch
    from torchvision.transforms import v2

    return v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)


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
