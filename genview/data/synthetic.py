"""Synthetic stand-ins for real datasets: `shapes` images written in a real dataset's own format.

A dataset entry with ``synthetic:`` set (config/rehearsal.yaml) is made by the workflow instead of read from an
existing copy: :func:`make_synthetic` draws shapes images (:mod:`genview.data.shapes`) and writes them at the
entry's ``root`` laid out the way its ``kind`` expects, so indexing reads them through the ordinary code of that
kind (class folders, caption CSV, a torchvision class, Karpathy's JSON), with the entry's own splits, file names
and columns:

* ``imagefolder``: ``root/<split folder>/<class>/<image>.jpg`` for every split of ``splits`` (and the caption CSV
  when ``captions`` is set);
* ``csv``: the CSV ``file`` with the entry's columns (image, caption, and label / split / mask when set), images
  under ``root/images/``; several captions per image are several rows;
* ``torchvision``: the files the torchvision class ``name`` reads (DTD, FGVCAircraft, OxfordIIITPet, Caltech101,
  Food101, SUN397). CIFAR-10/100 and Flowers102 are not possible: torchvision checks their files against fixed
  MD5 sums. Write those as ``imagefolder`` with a ``zeroshot_key``;
* ``karpathy``: ``root/images/*.jpg`` and the split JSON ``file`` with ``captions_per_image`` sentences per image.

The training split gets ``train_per_class`` images per class, every other split ``test_per_class``; sets with a
single split (Caltech101, SUN397, whose configs hold out a share) get both. ``synthetic.json`` at the root is
written last and marks a complete dataset. Everything is a pure function of (seed, split, class, index).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from genview.data import SYNTHETIC_MARKER
from genview.data.shapes import SHAPE_CLASSES, SPLIT_CODES, _caption, _make_sample
from genview.errors import ConfigError
from genview.io import atomic_path

MARKER = SYNTHETIC_MARKER
JPEG_QUALITY = 95
# torchvision classes whose files are checked against fixed MD5 sums, so no stand-in can pass for them.
CHECKSUMMED = ("CIFAR10", "CIFAR100", "Flowers102")


def _split_code(split: str) -> int:
    return SPLIT_CODES.get(split, zlib.crc32(split.encode()))


class _Writer:
    """Draws the samples of a synthetic dataset and writes image files under its root."""

    def __init__(self, name: str, spec: dict):
        self.name, self.spec, self.root = name, spec, Path(spec["root"])
        self.settings = spec["synthetic"]
        self.classes = SHAPE_CLASSES[: self.settings["classes"]]

    def count(self, split: str) -> int:
        return self.settings["train_per_class"] if split == "train" else self.settings["test_per_class"]

    def samples(self, split: str, per_class: int | None = None):
        """(class index, label, index, image, mask, captions) of one split, class by class."""
        per_class = self.count(split) if per_class is None else per_class
        for class_index, label in enumerate(self.classes):
            for i in range(per_class):
                rng = np.random.default_rng([self.settings["seed"], _split_code(split), class_index, i])
                image, mask, caption, _, _, attributes = _make_sample(label, self.settings["image_size"], rng)
                captions = [caption]
                for _ in range(50 * self.settings["captions_per_image"]):  # distinct captions: each is one sample
                    if len(captions) == self.settings["captions_per_image"]:
                        break
                    extra = _caption(attributes, int(rng.integers(2, 5)), rng)[0]
                    if extra not in captions:
                        captions.append(extra)
                yield class_index, label, i, image, mask, captions

    def save(self, image, relative: str | Path) -> str:
        with atomic_path(self.root / relative) as tmp:
            image.save(tmp, format="PNG" if str(relative).endswith(".png") else "JPEG", quality=JPEG_QUALITY)
        return Path(relative).as_posix()

    def text(self, relative: str | Path, content: str) -> None:
        with atomic_path(self.root / relative) as tmp:
            tmp.write_text(content)


def _imagefolder(w: _Writer) -> None:
    rows = []
    for split, folder in w.spec["splits"].items():
        for _, label, i, image, _, captions in w.samples(split):
            path = w.save(image, f"{folder}/{label}/{label}_{i:05d}.jpg")
            rows.append({"image": path, "caption": captions[0]})
    if w.spec.get("captions"):
        w.text(w.spec["captions"], pd.DataFrame(rows).to_csv(index=False))


def _csv(w: _Writer) -> None:
    spec = w.spec
    splits = ["train", "test"] if spec.get("split_column") else ["train"]
    rows = []
    for split in splits:
        for _, label, i, image, mask, captions in w.samples(split):
            path = w.save(image, f"images/{split}/{label}_{i:05d}.jpg")
            extra = {}
            if spec.get("mask_column"):
                extra[spec["mask_column"]] = w.save(mask, f"masks/{split}/{label}_{i:05d}.png")
            for caption in captions:
                row = {spec["image_column"]: path, **extra}
                for key, value in (("caption", caption), ("label", label), ("split", split)):
                    if spec.get(f"{key}_column"):
                        row[spec[f"{key}_column"]] = value
                rows.append(row)
    w.text(spec["file"], pd.DataFrame(rows).to_csv(index=False))


def _karpathy(w: _Writer) -> None:
    images = []
    for split, theirs in w.spec["splits"].items():
        for karpathy_split in theirs:
            if karpathy_split == "restval":  # Karpathy's extra training images: none are needed
                continue
            for _, label, i, image, _, captions in w.samples(karpathy_split, w.count(split)):
                filename = w.save(image, f"images/{karpathy_split}_{label}_{i:05d}.jpg").split("/", 1)[1]
                sentences = [
                    {"raw": c, "tokens": c.split(), "sentid": len(images) * 100 + k} for k, c in enumerate(captions)
                ]
                images.append(
                    {
                        "filepath": "images",
                        "filename": filename,
                        "split": karpathy_split,
                        "imgid": len(images),
                        "sentences": sentences,
                    }
                )
    w.text(w.spec["file"], json.dumps({"dataset": w.name, "images": images}))


def _dtd(w: _Writer) -> None:
    base = "dtd/dtd"
    for split, theirs in w.spec["splits"].items():
        lines = []
        for _, label, i, image, _, _ in w.samples(split):
            w.save(image, f"{base}/images/{label}/{label}_{theirs}_{i:04d}.jpg")
            lines.append(f"{label}/{label}_{theirs}_{i:04d}.jpg")
        w.text(f"{base}/labels/{theirs}1.txt", "\n".join(lines) + "\n")


def _fgvc_aircraft(w: _Writer) -> None:
    base = "fgvc-aircraft-2013b/data"
    w.text(f"{base}/variants.txt", "\n".join(w.classes) + "\n")
    for split, theirs in w.spec["splits"].items():
        lines = []
        for class_index, label, i, image, _, _ in w.samples(split):
            image_name = f"{_split_code(theirs) % 100:02d}{class_index:02d}{i:03d}"
            w.save(image, f"{base}/images/{image_name}.jpg")
            lines.append(f"{image_name} {label}")
        w.text(f"{base}/images_variant_{theirs}.txt", "\n".join(lines) + "\n")


def _oxford_iiit_pet(w: _Writer) -> None:
    # Pets' class names come from the image ids ("Circle_12" -> "Circle"), its labels from the annotation file.
    base = "oxford-iiit-pet"
    (w.root / base / "annotations").mkdir(parents=True, exist_ok=True)
    for split, theirs in w.spec["splits"].items():
        lines = []
        for class_index, label, i, image, _, _ in w.samples(split):
            image_id = f"{label}_{_split_code(theirs) % 1000}{i:03d}"
            w.save(image, f"{base}/images/{image_id}.jpg")
            lines.append(f"{image_id} {class_index + 1} 1 1")
        w.text(f"{base}/annotations/{theirs}.txt", "\n".join(lines) + "\n")


def _all_in_one(w: _Writer):
    """Sets without splits (Caltech101, SUN397): every image of both counts, for the config's holdout to split."""
    return w.samples("train", w.settings["train_per_class"] + w.settings["test_per_class"])


def _caltech101(w: _Writer) -> None:
    base = w.root / "caltech101/101_ObjectCategories"
    (base / "BACKGROUND_Google").mkdir(parents=True, exist_ok=True)  # torchvision drops this folder by name
    for _, label, i, image, _, _ in _all_in_one(w):
        w.save(image, f"caltech101/101_ObjectCategories/{label}/image_{i + 1:04d}.jpg")


def _food101(w: _Writer) -> None:
    base = "food-101"
    for split, theirs in w.spec["splits"].items():
        meta: dict[str, list[str]] = {}
        for _, label, i, image, _, _ in w.samples(split):
            w.save(image, f"{base}/images/{label}/{theirs}{i:04d}.jpg")
            meta.setdefault(label, []).append(f"{label}/{theirs}{i:04d}")
        w.text(f"{base}/meta/{theirs}.json", json.dumps(meta))


def _sun397(w: _Writer) -> None:
    base = "SUN397"
    w.text(f"{base}/ClassName.txt", "".join(f"/{label[0]}/{label}\n" for label in w.classes))
    for _, label, i, image, _, _ in _all_in_one(w):
        w.save(image, f"{base}/{label[0]}/{label}/sun_{i:05d}.jpg")


TORCHVISION_WRITERS = {
    "DTD": _dtd,
    "FGVCAircraft": _fgvc_aircraft,
    "OxfordIIITPet": _oxford_iiit_pet,
    "Caltech101": _caltech101,
    "Food101": _food101,
    "SUN397": _sun397,
}


def _torchvision(w: _Writer) -> None:
    name = w.spec["name"]
    if name in CHECKSUMMED:
        raise ConfigError(
            f"{w.name}.synthetic: torchvision's {name} checks its files against fixed MD5 sums, so no stand-in can "
            f"be written in its format; make the stand-in kind imagefolder (with zeroshot_key) instead"
        )
    if name not in TORCHVISION_WRITERS:
        raise ConfigError(
            f"{w.name}.synthetic: no synthetic writer for torchvision's {name} (writers: "
            f"{', '.join(TORCHVISION_WRITERS)}); use kind imagefolder instead"
        )
    TORCHVISION_WRITERS[name](w)


WRITERS = {"imagefolder": _imagefolder, "csv": _csv, "torchvision": _torchvision, "karpathy": _karpathy}


def make_synthetic(name: str, spec: dict) -> Path:
    """Write the synthetic dataset of entry ``name`` (validated ``spec`` with ``synthetic`` set) at its root;
    returns the completion marker."""
    if not spec.get("synthetic"):
        raise ConfigError(f"{name}.synthetic is not set: {name} is read from {spec.get('root')}, not made")
    if spec["kind"] not in WRITERS:
        raise ConfigError(f"{name}.synthetic: kind {spec['kind']!r} cannot be made (kinds: {', '.join(WRITERS)})")
    writer = _Writer(name, spec)
    marker = writer.root / MARKER
    marker.unlink(missing_ok=True)  # a stale marker must not vouch for a half-rewritten tree
    WRITERS[spec["kind"]](writer)
    writer.text(MARKER, json.dumps({"dataset": name, "spec": spec}, indent=2, sort_keys=True) + "\n")
    return marker
