"""The ``shapes`` embedded dataset: procedurally drawn image–caption pairs with ground-truth masks.

A laptop-sized stand-in for ImageNet / CC3M. Every image shows one shape of a known class with known
colour, size, fill texture, grid position and background, so captions of controlled detail (levels 1-4)
and exact foreground masks come for free. Files are laid out the way real datasets are::

    root/train/<class>/<class>_00000.png          RGB image (ImageNet-style class folders)
    root/masks/train/<class>/<class>_00000.png    mode "L", 255 = object, 0 = background
    root/captions.csv                             one row per image; written last (completion marker)

Everything is a pure function of ``(seed, split, class index, image index)``, so reruns are byte-identical
and an image does not depend on how many others are generated.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from genview.io import atomic_path

log = logging.getLogger(__name__)

# --- Vocabulary. Each concrete caption constraint is rendered as exactly one word/phrase from these, so a
# --- caption-complexity scorer (and the tests) can count constraints from the text alone.

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (240, 130, 30),
    "purple": (130, 50, 170),
    "pink": (240, 130, 180),
    "cyan": (40, 200, 210),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}


def _shade(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Second colour of a texture: a darker tint of light colours, a lighter tint of dark ones."""
    if sum(rgb) / 3 > 110:
        return tuple(round(c * 0.6) for c in rgb)
    return tuple(round(c + (255 - c) * 0.4) for c in rgb)


# A "red striped" object is red with darker-red stripes, so the caption's single colour word stays true.
# Shades never coincide with palette colours or each other (checked by the tests), which is what keeps the
# foreground and background colour sets of an image disjoint.
SHADES: dict[str, tuple[int, int, int]] = {name: _shade(rgb) for name, rgb in COLORS.items()}

SIZES: tuple[str, ...] = ("tiny", "small", "medium", "large", "huge")
# Object radius (circumscribed circle) as a fraction of the image side. The object's share of the image runs from
# about 0.03 (a tiny star) to 0.75 (a huge circle), so the foreground ratio the noise level is chosen from spans
# the bins of the adaptive rule.
SIZE_RADIUS: dict[str, float] = {"tiny": 0.17, "small": 0.23, "medium": 0.3, "large": 0.38, "huge": 0.47}

TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")

# 3x3 grid, row-major; the phrase is how the caption says it (phrases never contain one another).
POSITION_PHRASES: dict[str, str] = {
    "top left": "in the top left",
    "top": "at the top",
    "top right": "in the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "in the bottom left",
    "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
POSITIONS: tuple[str, ...] = tuple(POSITION_PHRASES)

# Nouns used when the caption does not name the class: they carry no concrete constraint.
GENERIC_NOUNS: tuple[str, ...] = ("shape", "object", "figure", "form", "symbol", "drawing")
# Abstract / emotional words sprinkled into some captions; they do not count as constraints.
ABSTRACT_WORDS: tuple[str, ...] = (
    "lovely", "calm", "cheerful", "gloomy", "serene", "playful",
    "mysterious", "elegant", "lonely", "friendly", "peaceful", "quirky",
)  # fmt: skip

# Concrete constraints a caption may state, in caption order; "outline" only exists for outlined objects.
CONSTRAINTS: tuple[str, ...] = (
    "size", "color", "texture", "shape", "outline", "position", "bg_color", "bg_texture",
)  # fmt: skip
# Detail level -> allowed number of constraints (level 4 is capped by what the image has).
LEVEL_CONSTRAINTS: dict[int, tuple[int, int]] = {1: (0, 0), 2: (1, 3), 3: (4, 6), 4: (7, len(CONSTRAINTS))}
# Most captions only name the object ("a star"); the others are drawn over the detail levels, and those with
# constraints name the class too most of the time. Measured with the default's tiny CLIP (12 epochs): with colour,
# size and position words in most captions, the image-text loss fell by matching them and zero-shot stayed at chance
# (8.7 %); with 60 % of the captions naming the class only, 18.7 %; with all of them, 57.3 % (docs/method.md §6).
SHAPE_ONLY_PROBABILITY = 0.85
LEVEL_PROBABILITIES: dict[int, float] = {1: 0.2, 2: 0.3, 3: 0.3, 4: 0.2}
SHAPE_NAMED_PROBABILITY = 0.9

ABSTRACT_PROBABILITY = 0.2
OUTLINE_PROBABILITY = 0.3
BACKGROUND_TEXTURE_PROBABILITY = 0.5  # otherwise the background is plain
MIN_IMAGE_SIZE = 32  # below this, small rings/crescents can vanish

# --- Shapes: unit-radius outlines (every vertex within distance 1 of the centre, so an object of radius r
# --- centred at least r from each edge is fully inside the image). Each shape is a list of
# --- (polygon, mask value) layers painted in order: value 0 cuts holes (ring, crescent).


def _regular(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


_CIRCLE = _regular(64)
_STAR = _regular(10) * np.where(np.arange(10) % 2 == 0, 1.0, 0.45)[:, None]
_CROSS = 0.95 * np.array(
    [(-.3, -1), (.3, -1), (.3, -.3), (1, -.3), (1, .3), (.3, .3),
     (.3, 1), (-.3, 1), (-.3, .3), (-1, .3), (-1, -.3), (-.3, -.3)]
)  # fmt: skip
_ARROW = 0.95 * np.array([(-1, -0.25), (0.2, -0.25), (0.2, -0.6), (1, 0), (0.2, 0.6), (0.2, 0.25), (-1, 0.25)])

_SHAPE_LAYERS: dict[str, list[tuple[np.ndarray, int]]] = {
    "circle": [(_CIRCLE, 255)],
    "square": [(_regular(4, phase=math.pi / 4), 255)],
    "triangle": [(_regular(3), 255)],
    "pentagon": [(_regular(5), 255)],
    "hexagon": [(_regular(6), 255)],
    "star": [(_STAR, 255)],
    "diamond": [(_regular(4) * [0.6, 1.0], 255)],
    "cross": [(_CROSS, 255)],
    "ellipse": [(_CIRCLE * [1.0, 0.55], 255)],
    "ring": [(_CIRCLE, 255), (_CIRCLE * 0.55, 0)],
    "crescent": [(_CIRCLE, 255), (_CIRCLE * 0.8 + [0.45, 0.0], 0)],
    "arrow": [(_ARROW, 255)],
}
SHAPE_CLASSES: tuple[str, ...] = tuple(_SHAPE_LAYERS)

T = TypeVar("T")

SPLIT_CODES: dict[str, int] = {"train": 0, "test": 1}
CSV_COLUMNS: tuple[str, ...] = (
    "image", "caption", "label", "split", "mask", "level", "n_constraints",
    "size", "color", "texture", "position", "bg_color", "bg_texture", "outline",
)  # fmt: skip


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[rng.integers(len(options))]


def _draw_mask(
    label: str, size: str, position: str, image_size: int, rng: np.random.Generator, rotation: float = 360.0
) -> Image.Image:
    """Binary (0/255, no anti-aliasing) mask of one shape, rotated by a random angle of up to ``rotation`` degrees and
    jittered."""
    radius = SIZE_RADIUS[size]
    row, col = divmod(POSITIONS.index(position), 3)
    # Grid cells span the range of centres that keeps the whole object inside; jitter stays within it.
    low, high = radius + 0.03, 1 - radius - 0.03
    centre = low + (high - low) * np.array([col, row]) / 2 + rng.uniform(-0.04, 0.04, size=2)
    centre = np.clip(centre, radius, 1 - radius)
    angle = rng.uniform(0, 2 * math.pi) * rotation / 360  # one draw whatever the range: the same images otherwise
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    scale = image_size - 1
    mask = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(mask)
    for polygon, value in _SHAPE_LAYERS[label]:
        points = (polygon @ rotation.T * radius + centre) * scale
        draw.polygon([tuple(p) for p in points.tolist()], fill=value)
    return mask


def _texture_pattern(texture: str, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean map: True where the texture's second colour goes."""
    period = rng.integers(max(4, image_size // 10), max(5, image_size // 5) + 1)
    y, x = np.mgrid[:image_size, :image_size] + rng.uniform(0, period, size=(2, 1, 1))
    match texture:
        case "plain":
            return np.zeros((image_size, image_size), dtype=bool)
        case "striped":
            angle = math.radians(_pick(rng, (0, 45, 90, 135)))
            return (x * math.cos(angle) + y * math.sin(angle)) // (period / 2) % 2 == 1
        case "dotted":
            return (x % period - period / 2) ** 2 + (y % period - period / 2) ** 2 < (0.3 * period) ** 2
        case "checkered":
            return (x // (period / 2) + y // (period / 2)) % 2 == 1
        case _:
            raise ValueError(f"unknown texture {texture!r}")


def _textured(color: str, texture: str, image_size: int, rng: np.random.Generator) -> np.ndarray:
    pattern = _texture_pattern(texture, image_size, rng)
    return np.where(pattern[..., None], np.array(SHADES[color], np.uint8), np.array(COLORS[color], np.uint8))


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour outside the object (the image edge counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _caption(
    attributes: dict[str, str], level: int, rng: np.random.Generator, shape_only: bool = False
) -> tuple[str, int]:
    """Caption stating a random subset of the image's constraints, sized by the detail level (``shape_only``: the
    class name alone, detail level 2)."""
    available = [c for c in CONSTRAINTS if c != "outline" or attributes["outline"] != "none"]
    low, high = LEVEL_CONSTRAINTS[level]
    count = 1 if shape_only else int(rng.integers(low, min(high, len(available)) + 1))
    if shape_only:
        stated = {"shape"}
    elif count and rng.random() < SHAPE_NAMED_PROBABILITY:
        others = [c for c in available if c != "shape"]
        stated = {"shape", *rng.choice(others, size=count - 1, replace=False).tolist()}
    else:
        stated = set(rng.choice(available, size=count, replace=False).tolist())

    words = [_pick(rng, ABSTRACT_WORDS)] if rng.random() < ABSTRACT_PROBABILITY else []
    words += [attributes[c] for c in ("size", "color", "texture") if c in stated]
    words.append(attributes["label"] if "shape" in stated else _pick(rng, GENERIC_NOUNS))
    caption = _with_article(" ".join(words))
    if "outline" in stated:
        caption += f" with {_with_article(attributes['outline'])} outline"
    if "position" in stated:
        caption += " " + POSITION_PHRASES[attributes["position"]]
    background = [attributes[c] for c in ("bg_texture", "bg_color") if c in stated]
    if background:
        caption += f" on {_with_article(' '.join(background))} background"
    return caption, count


@dataclass(frozen=True)
class ShapesStyle:
    """How varied the nuisance attributes are (the class is always one of :data:`SHAPE_CLASSES`): the object sizes
    and fill textures drawn from, and how often the background is textured and the object outlined. Fewer or larger
    sizes make the class easier to see at a small image size."""

    sizes: tuple[str, ...] = SIZES
    textures: tuple[str, ...] = TEXTURES
    background_texture_probability: float = BACKGROUND_TEXTURE_PROBABILITY
    outline_probability: float = OUTLINE_PROBABILITY
    rotation: float = 360.0  # largest rotation of an object, degrees

    @classmethod
    def from_spec(cls, spec: dict) -> ShapesStyle:
        """From a shapes dataset entry of the config (keys absent there keep their defaults)."""
        fields = {
            "sizes": tuple,
            "textures": tuple,
            "background_texture_probability": float,
            "outline_probability": float,
            "rotation": float,
        }
        return cls(**{key: convert(spec[key]) for key, convert in fields.items() if spec.get(key) is not None})


def sample_attributes(label: str, rng: np.random.Generator, style: ShapesStyle = ShapesStyle()) -> dict[str, str]:
    """The attributes of a new sample of class ``label``: size, colours, textures, position, outline."""
    fill, background, outline = (str(c) for c in rng.choice(list(COLORS), size=3, replace=False))
    background_textures = [t for t in TEXTURES if t != "plain"]
    return {
        "label": label,
        "size": _pick(rng, style.sizes),
        "color": fill,
        "texture": _pick(rng, style.textures),
        "position": _pick(rng, POSITIONS),
        "bg_color": background,
        "bg_texture": _pick(rng, background_textures)
        if rng.random() < style.background_texture_probability
        else "plain",
        "outline": outline if rng.random() < style.outline_probability else "none",
    }


def render(
    attributes: dict[str, str], image_size: int, rng: np.random.Generator, style: ShapesStyle = ShapesStyle()
) -> tuple[Image.Image, Image.Image]:
    """The image and mask of ``attributes``; rotation, position jitter and texture phases are drawn from ``rng``."""
    mask = _draw_mask(attributes["label"], attributes["size"], attributes["position"], image_size, rng, style.rotation)
    # Mask first, then compose: foreground colours are disjoint from background ones, so the mask is
    # exactly the set of pixels carrying foreground colours.
    inside = np.asarray(mask) == 255
    foreground = _textured(attributes["color"], attributes["texture"], image_size, rng)
    backdrop = _textured(attributes["bg_color"], attributes["bg_texture"], image_size, rng)
    image = np.where(inside[..., None], foreground, backdrop)
    if attributes["outline"] != "none":
        image[_boundary(inside)] = COLORS[attributes["outline"]]
    return Image.fromarray(image), mask


def _make_sample(label: str, image_size: int, rng: np.random.Generator, style: ShapesStyle = ShapesStyle()):
    """One image, its mask, caption, level, constraint count and attributes."""
    attributes = sample_attributes(label, rng, style)
    image, mask = render(attributes, image_size, rng, style)
    shape_only = bool(rng.random() < SHAPE_ONLY_PROBABILITY)
    level = 2 if shape_only else int(rng.choice(list(LEVEL_PROBABILITIES), p=list(LEVEL_PROBABILITIES.values())))
    caption, n_constraints = _caption(attributes, level, rng, shape_only)
    return image, mask, caption, level, n_constraints, attributes


def make_shapes(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    image_size: int = 64,
    train_per_class: int = 20,
    test_per_class: int = 5,
    style: ShapesStyle = ShapesStyle(),
) -> pd.DataFrame:
    """Generate the dataset under ``root`` and return the rows of ``root/captions.csv``."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    root = Path(root)
    # A stale marker must not vouch for a half-rewritten tree if this run is interrupted.
    (root / "captions.csv").unlink(missing_ok=True)
    rows = []
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for class_index, label in enumerate(SHAPE_CLASSES):
            for i in range(per_class):
                rng = np.random.default_rng([seed, SPLIT_CODES[split], class_index, i])
                image, mask, caption, level, n_constraints, attributes = _make_sample(label, image_size, rng, style)
                image_path = f"{split}/{label}/{label}_{i:05d}.png"
                mask_path = f"masks/{image_path}"
                with atomic_path(root / image_path) as tmp:
                    image.save(tmp, format="PNG")
                with atomic_path(root / mask_path) as tmp:
                    mask.save(tmp, format="PNG")
                row = {"image": image_path, "caption": caption, "split": split, "mask": mask_path}
                rows.append(row | {"level": level, "n_constraints": n_constraints, **attributes})
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    write_style(root, image_size, style)
    with atomic_path(root / "captions.csv") as tmp:
        frame.to_csv(tmp, index=False)
    log.info(
        "%s: %d image(s) with masks and captions (%s)",
        root,
        len(frame),
        ", ".join(f"{split} {count}" for split, count in frame["split"].value_counts(sort=False).items()),
    )
    return frame


# --- Reading a caption back --------------------------------------------------------------------------------------

_OUTLINE = re.compile(r" with an? (\w+) outline")
_BACKGROUND = re.compile(r" on an? ([\w ]+?) background")


def parse_caption(caption: str) -> dict[str, str]:
    """The attributes a caption states (the inverse of how :func:`make_shapes` writes captions): keys among
    label, size, color, texture, outline, position, bg_color, bg_texture. Generic nouns and abstract words state
    nothing."""
    stated: dict[str, str] = {}
    text = f" {caption.strip().rstrip('.')} "
    for position, phrase in POSITION_PHRASES.items():
        if f" {phrase} " in text or text.endswith(f" {phrase} "):
            stated["position"] = position
            text = text.replace(f" {phrase}", "")
            break
    if match := _OUTLINE.search(text):
        stated["outline"] = match[1]
        text = text[: match.start()] + text[match.end() :]
    if match := _BACKGROUND.search(text):
        for word in match[1].split():
            if word in TEXTURES:
                stated["bg_texture"] = word
            elif word in COLORS:
                stated["bg_color"] = word
        text = text[: match.start()] + text[match.end() :]
    for word in text.split():
        if word in SIZES:
            stated["size"] = word
        elif word in COLORS:
            stated["color"] = word
        elif word in TEXTURES:
            stated["texture"] = word
        elif word in SHAPE_CLASSES:
            stated["label"] = word
    return stated


def write_style(root: str | os.PathLike, image_size: int, style: ShapesStyle) -> None:
    """``root/style.json``: how the set was drawn, so a renderer can draw new samples the same way."""
    import json

    payload = {
        "image_size": image_size,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in style.__dict__.items()},
    }
    with atomic_path(Path(root) / "style.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")


def read_style(root: str | os.PathLike) -> tuple[int, ShapesStyle]:
    import json

    payload = json.loads((Path(root) / "style.json").read_text())
    return payload.pop("image_size"), ShapesStyle.from_spec(payload)
