"""Class names, label order and zero-shot prompt templates of the evaluation datasets.

Names and templates come from clip-benchmark (``clip_benchmark/datasets/en_classnames.json`` and
``en_zeroshot_classification_templates.json``, read through :mod:`importlib.resources`; the package is installed
with ``--no-deps`` because only these files are used). A dataset's clip-benchmark key is, in this order: the spec's
``zeroshot_key``; for kind ``torchvision``, its class name (``CIFAR10`` -> ``cifar10``, see :data:`TORCHVISION_KEYS`);
for kind ``imagefolder``, ``imagenet1k`` when the dataset is named like ``imagenet*`` / ``in100`` / ``in1k``; the
``shapes`` kind has the project's own templates (:data:`SHAPES_TEMPLATES`) and its labels as names.

Label order (:func:`label_order`) -- what evaluation maps labels to integers with:

* kind ``torchvision`` whose dataset class carries a ``classes`` list as a class attribute (MNIST, Flowers102,
  ...): that list, i.e. torchvision's target order, whole (classes absent from the manifest keep their index);
* otherwise the labels present, sorted -- numerically when every label is an integer (torchvision datasets without
  class names, e.g. SVHN, GTSRB, PCAM, FER2013, are indexed with their targets as labels), else as strings. Sorted
  strings are torchvision's order for the datasets whose classes come from sorted folder or file names (ImageFolder
  sets such as EuroSAT and Country211, CIFAR, DTD, Food101, SUN397, Caltech101) and the wnid order of ImageNet.

Class names (:func:`class_names`) follow that order. clip-benchmark's names file is used for the keys it has
(caltech101, flowers, mnist, eurosat, gtsrb, country211, pcam, fer2013, svhn, pets, imagenet1k, ...). Its lists
are in torchvision's target order -- clip-benchmark's build_dataset assigns them as ``ds.classes`` of the
torchvision dataset: for ImageNet the sorted wnid order (matched through timm's wnid list, so ImageNet-100 works),
for caltech101 the sorted folder names including ``BACKGROUND_Google`` (which torchvision drops), for fer2013 the
sorted folders of the Kaggle copy (remapped to torchvision's CSV targets). When they cannot be matched to the
manifest's labels (another number of classes), a warning is logged and the labels are used. For keys without a
names list (cifar10, cifar100, dtd, food101, sun397, cars, fgvc_aircraft, stl10, renderedsst2) clip-benchmark
prompts with torchvision's own class names, and so do we: the labels with ``_`` (and for SUN397 ``/``) turned into
spaces.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import json
import logging
import re
from pathlib import Path

from genview.errors import BadInputError

log = logging.getLogger(__name__)

CLIP_BENCHMARK_PACKAGE = "clip_benchmark.datasets"

TORCHVISION_KEYS = {
    "CIFAR10": "cifar10",
    "CIFAR100": "cifar100",
    "DTD": "dtd",
    "Flowers102": "flowers",
    "OxfordIIITPet": "pets",
    "Caltech101": "caltech101",
    "Food101": "food101",
    "SUN397": "sun397",
    "FGVCAircraft": "fgvc_aircraft",
    "StanfordCars": "cars",
    "STL10": "stl10",
    "EuroSAT": "eurosat",
    "GTSRB": "gtsrb",
    "MNIST": "mnist",
    "SVHN": "svhn",
    "Country211": "country211",
    "RenderedSST2": "renderedsst2",
    "PCAM": "pcam",
    "FER2013": "fer2013",
    "ImageNet": "imagenet1k",
}

# clip-benchmark's templates for a key it has names but no templates for (its own fallback).
DEFAULT_TEMPLATE_KEY = "imagenet1k"

# torchvision's FER2013 targets follow the challenge CSV (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise,
# 6 neutral); clip-benchmark's names follow the sorted folders of the Kaggle copy (..., happy, neutral, sad, ...).
# Position i of this list: index into clip-benchmark's names of torchvision target i.
FER2013_TARGET_TO_NAME = [0, 1, 2, 3, 5, 6, 4]

# In the words of the set's own captions ("a small red star ..."): a CLIP trained on them has never seen "photo" or
# "drawing", whose untrained token embeddings would only add noise to the class prompts.
SHAPES_TEMPLATES = ["a {c}", "an {c}", "a small {c}", "a large {c}"]

_IMAGENET_NAME = re.compile(r"imagenet|^in(100|1k)$", re.IGNORECASE)
_WNID = re.compile(r"^n\d{8}$")
_INTEGER = re.compile(r"^-?\d+$")


@functools.cache
def _clip_benchmark_json(filename: str) -> dict:
    try:
        text = (importlib.resources.files(CLIP_BENCHMARK_PACKAGE) / filename).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        raise BadInputError(
            f"clip-benchmark's {filename} is not installed; run `make env` or "
            "`python -m pip install --no-deps clip-benchmark==1.6.2`"
        ) from None
    return json.loads(text)


def clip_benchmark_templates() -> dict[str, list[str]]:
    return _clip_benchmark_json("en_zeroshot_classification_templates.json")


def clip_benchmark_classnames() -> dict[str, list[str]]:
    return _clip_benchmark_json("en_classnames.json")


def _key(name: str, spec: dict) -> str | None:
    """The dataset's clip-benchmark key, ``"shapes"`` for the project's own set, or None when unknown."""
    if spec.get("zeroshot_key"):
        key = spec["zeroshot_key"]
        known_keys = set(clip_benchmark_templates()) | set(clip_benchmark_classnames())
        if key != "shapes" and key not in known_keys:
            known = ", ".join(sorted(known_keys))
            raise BadInputError(f"{name}.zeroshot_key: {key!r} is not a clip-benchmark dataset key (known: {known})")
        return key
    kind = spec.get("kind")
    if kind == "shapes":
        return "shapes"
    if kind == "torchvision":
        return TORCHVISION_KEYS.get(spec.get("name", ""))
    if kind == "imagefolder" and _IMAGENET_NAME.search(name):
        return "imagenet1k"
    return None


def zero_shot_templates(name: str, spec: dict) -> list[str]:
    """Prompt templates (``{c}`` stands for the class name) for zero-shot classification of dataset ``name``."""
    key = _key(name, spec)
    if key == "shapes":
        return list(SHAPES_TEMPLATES)
    if key is None:
        kind = spec.get("kind")
        where = f"torchvision name {spec.get('name')!r}" if kind == "torchvision" else f"kind {kind!r}"
        raise BadInputError(
            f"{name}: no zero-shot templates known for {where}; set datasets/eval_datasets.{name}.zeroshot_key to a "
            f"clip-benchmark key (e.g. cifar10, imagenet1k; known: {', '.join(sorted(clip_benchmark_templates()))})"
        )
    templates = clip_benchmark_templates()
    return list(templates.get(key) or templates[DEFAULT_TEMPLATE_KEY])


def _torchvision_class_constant(spec: dict) -> list[str] | None:
    if spec.get("kind") != "torchvision":
        return None
    try:
        import torchvision.datasets
    except ImportError:
        return None
    classes = getattr(getattr(torchvision.datasets, spec.get("name", ""), None), "classes", None)
    return list(classes) if isinstance(classes, list) and all(isinstance(c, str) for c in classes) else None


def label_order(name: str, spec: dict, labels_in_manifest: list[str]) -> list[str]:
    """The canonical order of the label strings (see the module docstring); idempotent on its own output."""
    labels = sorted({str(label) for label in labels_in_manifest})
    constant = _torchvision_class_constant(spec)
    if constant is not None and set(labels) <= set(constant):
        return constant
    if labels and all(_INTEGER.match(label) for label in labels):
        return sorted(labels, key=int)
    return labels


def _readable(label: str, key: str | None) -> str:
    text = label.replace("_", " ")
    if key == "sun397":
        text = text.replace("/", " ")
    return " ".join(text.split()) or label


@functools.cache
def _imagenet_wnids() -> list[str] | None:
    """The 1000 ImageNet-1k wnids in target order (sorted), from timm's metadata, without importing timm."""
    found = importlib.util.find_spec("timm")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "data" / "_info" / "imagenet_synsets.txt"
    return path.read_text().split() if path.is_file() else None


def _aligned_names(key: str, order: list[str], names: list[str]) -> list[str] | None:
    """clip-benchmark's ``names`` for the labels in ``order``, or None when they cannot be matched safely."""
    if key == "imagenet1k" and not all(_INTEGER.match(label) for label in order):
        # Only wnid folders can be matched (ImageNet-100 is a subset); other folder names are used as they are.
        wnids = _imagenet_wnids()
        if not (wnids and len(wnids) == len(names) and set(order) <= set(wnids)):
            return None
        position = {wnid: i for i, wnid in enumerate(wnids)}
        return [names[position[label]] for label in order]
    if order and all(_INTEGER.match(label) for label in order):  # torchvision targets as labels
        targets = [int(label) for label in order]
        if key == "fer2013" and len(names) == len(FER2013_TARGET_TO_NAME):
            names = [names[i] for i in FER2013_TARGET_TO_NAME]
        if all(0 <= target < len(names) for target in targets):
            return [names[target] for target in targets]
        return None
    if key == "caltech101" and "BACKGROUND_Google" not in order and len(order) == len(names) - 1:
        return names[1:]
    if len(order) == len(names):
        return list(names)
    return None


def class_names(name: str, spec: dict, labels_in_manifest: list[str]) -> list[str]:
    """Readable class names, one per label of ``label_order(name, spec, labels_in_manifest)``, in that order."""
    order = label_order(name, spec, labels_in_manifest)
    key = _key(name, spec)
    if key is not None and key in clip_benchmark_classnames():
        names = _aligned_names(key, order, clip_benchmark_classnames()[key])
        if names is not None:
            return names
        log.warning(
            "%s: clip-benchmark's %d %s class names do not match the %d label(s) of the manifest; "
            "prompting with the labels themselves",
            name,
            len(clip_benchmark_classnames()[key]),
            key,
            len(order),
        )
    return [_readable(label, key) for label in order]
