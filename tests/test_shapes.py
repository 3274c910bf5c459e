"""Tests for the ``shapes`` embedded dataset (genview.data.shapes)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genview.data.shapes import (
    ABSTRACT_WORDS,
    COLORS,
    GENERIC_NOUNS,
    LEVEL_PROBABILITIES,
    POSITION_PHRASES,
    SHADES,
    SHAPE_CLASSES,
    SHAPE_NAMED_PROBABILITY,
    SHAPE_ONLY_PROBABILITY,
    SIZES,
    TEXTURES,
    make_shapes,
    parse_caption,
)

EXPECTED_COLUMNS = ["image", "caption", "label", "split", "mask", "level", "n_constraints"]
ATTRIBUTE_COLUMNS = ["size", "color", "texture", "position", "bg_color", "bg_texture", "outline"]
# Every concrete constraint appears in a caption as exactly one of these words or phrases.
CONSTRAINT_WORDS = set(SHAPE_CLASSES) | set(COLORS) | set(SIZES) | set(TEXTURES)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def recount_constraints(caption: str) -> int:
    """Count constraints from the caption text alone, using only the vocabulary constants."""
    words = re.findall(r"[a-z]+", caption)
    return sum(w in CONSTRAINT_WORDS for w in words) + sum(p in caption for p in POSITION_PHRASES.values())


def level_of(n_constraints: int) -> int:
    return 1 if n_constraints == 0 else 2 if n_constraints <= 3 else 3 if n_constraints <= 6 else 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("shapes")
    return root, make_shapes(root, seed=0)


def test_vocabulary_is_unambiguous():
    assert len(SHAPE_CLASSES) >= 10
    groups = [
        set(SHAPE_CLASSES),
        set(COLORS),
        set(SIZES),
        set(TEXTURES),
        set(ABSTRACT_WORDS),
        set(GENERIC_NOUNS),
    ]
    assert sum(map(len, groups)) == len(set().union(*groups)), "a word belongs to two vocabularies"
    # Fill/texture colours of one image and background colours of another never collide by accident.
    palette = list(COLORS.values()) + list(SHADES.values())
    assert len(set(palette)) == len(palette)


def test_layout_counts_and_formats(dataset):
    root, frame = dataset
    assert list(frame.columns[: len(EXPECTED_COLUMNS)]) == EXPECTED_COLUMNS
    assert set(ATTRIBUTE_COLUMNS) <= set(frame.columns[len(EXPECTED_COLUMNS) :])
    counts = frame.groupby(["split", "label"]).size()
    assert counts.loc["train"].to_dict() == dict.fromkeys(SHAPE_CLASSES, 20)
    assert counts.loc["test"].to_dict() == dict.fromkeys(SHAPE_CLASSES, 5)
    for path in root.glob("*/*"):
        if path.parent.name in ("train", "test"):
            assert path.name in SHAPE_CLASSES  # ImageNet-style: one folder per class, nothing else
    assert not list(root.rglob("*.tmp"))
    for (split, label), n in counts.items():
        expected = {f"{split}/{label}/{label}_{i:05d}.png" for i in range(n)}
        assert set(frame.image[(frame.split == split) & (frame.label == label)]) == expected
    assert (frame["mask"] == "masks/" + frame.image).all()
    for row in frame.itertuples():
        with Image.open(root / row.image) as image, Image.open(root / row.mask) as mask:
            assert image.format == mask.format == "PNG"
            assert (image.mode, image.size) == ("RGB", (64, 64))
            assert (mask.mode, mask.size) == ("L", (64, 64))


def test_csv_round_trips(dataset):
    root, frame = dataset
    on_disk = pd.read_csv(root / "captions.csv")
    pd.testing.assert_frame_equal(on_disk, frame, check_dtype=False)
    assert on_disk.notna().all().all()


def test_masks_match_drawn_pixels(dataset):
    root, frame = dataset
    areas = {}
    for row in frame.itertuples():
        image = np.asarray(Image.open(root / row.image))
        mask = np.asarray(Image.open(root / row.mask))
        assert set(np.unique(mask)) <= {0, 255}
        inside = mask == 255
        assert 0 < inside.sum() < inside.size
        colors_in = {tuple(c) for c in image[inside]}
        colors_out = {tuple(c) for c in image[~inside]}
        assert colors_in.isdisjoint(colors_out)
        # The pixels are what the attributes (and hence the captions) say.
        allowed_in = {COLORS[row.color], SHADES[row.color]} | (
            {COLORS[row.outline]} if row.outline != "none" else set()
        )
        assert colors_in <= allowed_in
        assert colors_out <= {COLORS[row.bg_color], SHADES[row.bg_color]}
        if row.bg_texture == "plain":
            assert colors_out == {COLORS[row.bg_color]}
        areas.setdefault(row.size, []).append(inside.mean())
    mean_area = [np.mean(areas[s]) for s in SIZES]
    assert mean_area == sorted(mean_area)


def test_captions_levels_and_constraint_counts(dataset):
    _, frame = dataset
    assert set(frame.level) == {1, 2, 3, 4}
    shape_only = frame.caption.map(lambda caption: set(parse_caption(caption)) == {"label"}) & (
        frame.n_constraints == 1
    )
    # Drawn at the stated rates (300 captions: +-0.06): most name the class only, the others spread over the levels.
    assert shape_only.mean() == pytest.approx(SHAPE_ONLY_PROBABILITY, abs=0.07)
    shares = frame[~shape_only].level.value_counts(normalize=True)
    for level, probability in LEVEL_PROBABILITIES.items():
        assert shares.get(level, 0) == pytest.approx(probability, abs=0.12)
    with_constraints = frame[frame.n_constraints > 0]
    named = with_constraints.caption.map(lambda caption: "label" in parse_caption(caption)).mean()
    assert named >= SHAPE_NAMED_PROBABILITY - 0.06  # a random subset of the constraints may name it too
    assert frame.caption.str.split().map(lambda ws: bool(set(ws) & set(ABSTRACT_WORDS))).any()
    assert frame.caption.str.split().map(lambda ws: not set(ws) & set(ABSTRACT_WORDS)).any()
    for row in frame.itertuples():
        assert row.level == level_of(row.n_constraints)
        assert recount_constraints(row.caption) == row.n_constraints, row.caption
        words = set(re.findall(r"[a-z]+", row.caption))
        # Whatever the caption states must be true of the image.
        assert words & set(SHAPE_CLASSES) <= {row.label}
        assert words & set(SIZES) <= {row.size}
        assert words & set(COLORS) <= {row.color, row.bg_color, row.outline}
        assert words & set(TEXTURES) <= {row.texture, row.bg_texture}
        assert [p for p in POSITION_PHRASES.values() if p in row.caption] in (
            [],
            [POSITION_PHRASES[row.position]],
        )
        if row.level == 1:
            assert not words & CONSTRAINT_WORDS
            assert not any(p in row.caption for p in POSITION_PHRASES.values())
        if row.level == 4:
            assert "background" in words


def test_same_seed_same_bytes_and_rerun_overwrites(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    kwargs = dict(seed=3, train_per_class=2, test_per_class=1)
    make_shapes(first, **kwargs)
    make_shapes(second, **kwargs)
    hashes = file_hashes(first)
    # An image and a mask per sample, plus captions.csv and style.json.
    assert len(hashes) == 2 * 3 * len(SHAPE_CLASSES) + 2
    assert hashes == file_hashes(second)
    make_shapes(first, **kwargs)
    assert file_hashes(first) == hashes


def test_image_independent_of_dataset_size(tmp_path):
    make_shapes(tmp_path / "small", seed=1, train_per_class=1, test_per_class=1)
    make_shapes(tmp_path / "big", seed=1, train_per_class=3, test_per_class=2)
    small, big = file_hashes(tmp_path / "small"), file_hashes(tmp_path / "big")
    assert {k: v for k, v in small.items() if k.endswith(".png")}.items() <= big.items()


def test_different_seed_different_images(tmp_path):
    make_shapes(tmp_path / "a", seed=0, train_per_class=2, test_per_class=1)
    make_shapes(tmp_path / "b", seed=1, train_per_class=2, test_per_class=1)
    a, b = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "b")
    images = [k for k in a if not k.startswith("masks/") and k.endswith(".png")]
    assert sum(a[k] != b[k] for k in images) == len(images)


def test_other_image_size(tmp_path):
    frame = make_shapes(tmp_path, image_size=96, train_per_class=1, test_per_class=0)
    assert len(frame) == len(SHAPE_CLASSES) and set(frame.split) == {"train"}
    for row in frame.itertuples():
        assert Image.open(tmp_path / row.image).size == (96, 96)
        assert np.asarray(Image.open(tmp_path / row.mask)).any()
    with pytest.raises(ValueError):
        make_shapes(tmp_path / "tiny", image_size=8)
