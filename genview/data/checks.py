"""What a dataset entry needs on disk, checked before any job runs (``genview config check`` and the Snakefile).

Only cheap checks: folders and files exist, CSV headers hold the configured columns, class lists name existing
folders. Reading every image is indexing's work. Import-light (no pandas): the Snakefile runs these at parse time.
"""

from __future__ import annotations

import csv
from pathlib import Path

from genview.errors import BadInputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

#: Kinds whose files the workflow makes itself.
GENERATED_KINDS = ("shapes",)


def resolve_path(root: str | Path, path: str | Path) -> Path:
    """``path`` relative to ``root`` unless it is absolute (the rule for CSV, JSON and list files)."""
    return Path(root) / path


def read_class_list(name: str, spec: dict) -> list[str] | None:
    """The imagefolder ``classes`` setting as a list of folder names (None: every class folder).

    A list is used as is; a string is a text file (relative to root, or absolute) with one name per line; blank
    lines and lines starting with ``#`` are skipped, and so is anything after the first whitespace on a line, so a
    ``wnid name`` list works too.
    """
    classes = spec.get("classes")
    if classes is None:
        return None
    if isinstance(classes, str):
        path = resolve_path(spec["root"], classes)
        try:
            lines = path.read_text().splitlines()
        except (FileNotFoundError, IsADirectoryError):
            raise BadInputError(f"{name}.classes: class list file {path} not found") from None
        except UnicodeDecodeError as error:
            raise BadInputError(f"{name}.classes: {path} is not a text file: {error}") from None
        classes = [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not classes:
            raise BadInputError(f"{name}.classes: {path} lists no class")
    return list(dict.fromkeys(str(c) for c in classes))


def _csv_header(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle), [])


def dataset_problems(name: str, spec: dict, where: str) -> list[str]:
    """Problems with dataset ``name`` on disk, each naming its config key (``where`` is the entry's key path)."""
    kind = spec["kind"]
    if kind in GENERATED_KINDS:
        return []
    root = Path(spec["root"])
    if kind == "torchvision" and spec.get("download"):
        return []  # torchvision fills the root itself
    if not root.is_dir():
        found = "is a file, not a folder" if root.exists() else "does not exist"
        return [f"{where}.root: folder {root} {found}"]
    problems = []
    if kind == "imagefolder":
        try:
            wanted = read_class_list(name, spec)
        except BadInputError as error:
            problems.append(f"{where}.classes: {error}")
            wanted = None
        for split, folder in spec["splits"].items():
            split_dir = root / folder
            if not split_dir.is_dir():
                found = "is a file, not a folder" if split_dir.exists() else "does not exist"
                problems.append(f"{where}.splits.{split}: folder {split_dir} {found}")
                continue
            entries = list(split_dir.iterdir())
            class_dirs = {p.name for p in entries if p.is_dir()}
            loose_images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
            if loose_images and not class_dirs:
                problems.append(
                    f"{where}.splits.{split}: {split_dir} holds {len(loose_images)} image(s) directly, not one folder "
                    f"per class (ImageNet's official flat val/ is like this): sort the images into class folders "
                    f"(e.g. with the ILSVRC2012 validation ground truth, as torchvision.datasets.ImageNet does)"
                )
            elif not class_dirs:
                problems.append(f"{where}.splits.{split}: {split_dir} has no class folders")
            absent = [c for c in wanted or () if class_dirs and c not in class_dirs]
            if absent:
                problems.append(
                    f"{where}.classes: {len(absent)} listed class(es) missing from {split_dir}, e.g. {absent[:5]}"
                )
        if spec.get("captions") and not resolve_path(root, spec["captions"]).is_file():
            problems.append(f"{where}.captions: file {resolve_path(root, spec['captions'])} does not exist")
    elif kind == "csv":
        path = resolve_path(root, spec["file"])
        if not path.is_file():
            return [f"{where}.file: {path} does not exist"]
        header = _csv_header(path)
        for key in ("image_column", "caption_column", "label_column", "split_column", "mask_column"):
            if spec.get(key) and spec[key] not in header:
                problems.append(f"{where}.{key}: column {spec[key]!r} is not in {path} (columns: {header})")
    elif kind == "karpathy":
        path = resolve_path(root, spec["file"])
        if not path.is_file():
            problems.append(f"{where}.file: {path} does not exist")
    return problems
