"""Index a dataset into a manifest (id, path, caption, label, split, mask), verifying every image.

Kinds: ``imagefolder`` (class folders per split, optional caption CSV, optional class list), ``csv``
(image/caption[/label/split/mask] columns), ``torchvision`` (a torchvision.datasets class over a local root),
``karpathy`` (Flickr30k / MSCOCO through Karpathy's split JSON, one row per image and caption) and ``shapes`` (the
generated set, read as the CSV it is written as). Files that cannot be used are listed in rejects.csv with the reason.

Every kind takes ``holdout``: a seeded, per-class share of the train rows moved to a test split, for datasets
that have none (Caltech-101); see :func:`apply_holdout`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from genview.contracts import MANIFEST, REJECTS
from genview.data import dataset_root
from genview.data.checks import IMAGE_EXTENSIONS, read_class_list, resolve_path
from genview.data.images import image_problem
from genview.errors import BadInputError, ConfigError
from genview.io import atomic_path
from genview.runtime.progress import progress

log = logging.getLogger(__name__)

VERIFY_CHUNK = 512
# Reject reasons of whole classes and of files that are no images (listed; on_bad_image: error stops on an empty
# class, not on a stray README).
EMPTY_CLASS = "class left out"
NOT_AN_IMAGE = "not an image file"


def stable_id(*parts: str) -> str:
    """An id that depends only on what identifies the sample, so reruns and other shard counts keep it."""
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:16]


@dataclass
class Listing:
    """What a dataset holds before verification: candidate rows and files already known to be missing."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, path: Path, *, id_parts: tuple[str, ...], caption="", label="", split="train", mask=""):
        self.rows.append(
            dict(id=stable_id(*id_parts), path=str(path), caption=caption, label=label, split=split, mask=mask)
        )


def _walk_files(folder: Path, split: str, listing: Listing) -> list[Path]:
    """The files under ``folder``, sorted. What cannot be used goes to the listing's rejects with the reason instead
    of vanishing: a folder that cannot be read, a symbolic link whose target is missing."""

    def unreadable(error: OSError) -> None:
        listing.rejects.append(
            dict(path=str(error.filename), split=split, reason=f"unreadable folder: {error.strerror}")
        )

    files = []
    for directory, _, names in os.walk(folder, onerror=unreadable, followlinks=True):
        for file_name in names:
            path = Path(directory, file_name)
            if path.is_file():
                files.append(path)
            elif path.is_symlink():
                listing.rejects.append(
                    dict(path=str(path), split=split, reason=f"dangling symbolic link (to {os.readlink(path)})")
                )
    return sorted(files)


def _list_imagefolder(name: str, spec: dict, export_dir: Path) -> Listing:
    root = Path(spec["root"])
    listing = Listing()
    captions: dict[str, str] = {}
    if spec.get("captions"):
        caption_rows = _read_csv(resolve_path(root, spec["captions"]), required=("image", "caption"))
        captions = dict(zip(caption_rows["image"], caption_rows["caption"]))
    wanted = read_class_list(name, spec)
    ignored = 0
    for split, folder in spec["splits"].items():
        split_dir = root / folder
        if not split_dir.is_dir():
            raise BadInputError(f"{name}: split folder {split_dir} does not exist (splits.{split} = {folder!r})")
        class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
        if wanted is not None:
            present = {p.name for p in class_dirs}
            absent = [c for c in wanted if c not in present]
            if absent:
                raise BadInputError(
                    f"{name}: {len(absent)} listed class(es) missing from split folder {split_dir} "
                    f"(splits.{split}), e.g. {absent[:5]}"
                )
            keep = set(wanted)
            class_dirs = [p for p in class_dirs if p.name in keep]
        for class_dir in class_dirs:
            images = 0
            for path in _walk_files(class_dir, split, listing):
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    ignored += 1
                    listing.rejects.append(dict(path=str(path), split=split, reason=f"{NOT_AN_IMAGE} ({path.suffix})"))
                    continue
                images += 1
                rel = path.relative_to(root).as_posix()
                listing.add(path, id_parts=(rel,), caption=captions.pop(rel, ""), label=class_dir.name, split=split)
            if not images:
                listing.rejects.append(
                    dict(path=str(class_dir), split=split, reason=f"{EMPTY_CLASS}: no image file in the folder")
                )
    for rel in captions:
        listing.rejects.append(
            dict(path=str(root / rel), split="", reason="listed in captions CSV, not in a split folder")
        )
    if ignored:
        listing.notes.append(f"{ignored} file(s) without an image extension, listed in rejects.csv")
    return listing


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise BadInputError(f"CSV file not found: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: not a readable CSV: {error}") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise BadInputError(f"{path}: missing column(s) {missing}; columns present: {list(frame.columns)}")
    return frame


def _list_csv(name: str, spec: dict, export_dir: Path) -> Listing:
    root = Path(spec["root"])
    columns = {key: spec.get(f"{key}_column") for key in ("image", "caption", "label", "split", "mask")}
    frame = _read_csv(resolve_path(root, spec["file"]), required=tuple(c for c in columns.values() if c))
    listing = Listing()
    seen: dict[str, int] = {}
    for line, row in enumerate(frame.to_dict("records"), start=2):
        value = {key: (row[column] if column else "") for key, column in columns.items()}
        path = root / value["image"]
        split = value["split"] or "train"
        if not value["image"] or not path.is_file():
            reason = "empty image field" if not value["image"] else "missing file"
            listing.rejects.append(dict(path=str(path), split=split, reason=f"{reason} (CSV line {line})"))
            continue
        # Several captions per image are several samples; an identical repeated row is one.
        id_parts = (Path(value["image"]).as_posix(), value["caption"])
        key = stable_id(*id_parts)
        if key in seen:
            listing.rejects.append(
                dict(path=str(path), split=split, reason=f"duplicate of CSV line {seen[key]} (CSV line {line})")
            )
            continue
        seen[key] = line
        mask = str(root / value["mask"]) if value["mask"] else ""
        listing.add(path, id_parts=id_parts, caption=value["caption"], label=value["label"], split=split, mask=mask)
    return listing


def _list_shapes(name: str, spec: dict, export_dir: Path) -> Listing:
    root = Path(dataset_root(name, spec))
    if not (root / "captions.csv").is_file():
        raise BadInputError(f"{name}: {root / 'captions.csv'} not found; run `genview data make-shapes` first")
    as_csv = dict(
        root=str(root),
        file="captions.csv",
        image_column="image",
        caption_column="caption",
        label_column="label",
        split_column="split",
        mask_column="mask",
    )
    return _list_csv(name, as_csv, export_dir)


def _torchvision_file_samples(dataset) -> list[tuple[Path, int]] | None:
    """(path, label index) pairs for torchvision datasets that keep their images as files, else None."""
    for files, labels in (("_image_files", "_labels"), ("_images", "_labels")):
        if hasattr(dataset, files) and hasattr(dataset, labels):
            return [(Path(p), int(y)) for p, y in zip(getattr(dataset, files), getattr(dataset, labels))]
    for attribute in ("_samples", "samples"):
        if isinstance(getattr(dataset, attribute, None), list):
            return [(Path(p), int(y)) for p, y in getattr(dataset, attribute)]
    return None


def _export_torchvision(dataset, folder: Path) -> list[tuple[Path, int]]:
    """Write the images of an in-memory dataset (CIFAR, MNIST, ...) as PNG files, once; reruns reuse them."""
    samples = []
    with progress(range(len(dataset)), desc=f"export {folder}", unit="img") as indices:
        for index in indices:
            path = folder / f"{index:06d}.png"
            image, target = dataset[index]
            if not path.is_file():
                with atomic_path(path) as tmp:
                    image.convert("RGB").save(tmp, format="PNG")
            samples.append((path, int(target)))
    return samples


def _list_torchvision(name: str, spec: dict, export_dir: Path) -> Listing:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, spec["name"], None)
    if not inspect.isclass(dataset_class):
        raise ConfigError(f"{name}.name: torchvision.datasets has no dataset class {spec['name']!r}")
    parameters = inspect.signature(dataset_class).parameters
    if "train" in parameters:
        variants = {"train": {"train": True}, "test": {"train": False}}
    elif "split" in parameters:
        variants = {ours: {"split": theirs} for ours, theirs in spec["splits"].items()}
    else:
        variants = {"train": {}}
    root = Path(spec["root"])
    listing = Listing()
    for split, arguments in variants.items():
        if "download" in parameters:
            arguments = {**arguments, "download": spec["download"]}
        try:
            dataset = dataset_class(str(root), **arguments)
        except (RuntimeError, FileNotFoundError, ValueError) as error:
            raise BadInputError(
                f"{name}: torchvision {spec['name']}({arguments}) could not be opened under {root}: {error}"
            ) from None
        # ImageNet's classes are tuples of names; its wnids (the folder names) are the labels, as for imagefolder.
        classes = list(
            getattr(dataset, "wnids", None)
            or getattr(dataset, "classes", None)
            or getattr(dataset, "categories", None)
            or []
        )
        samples = _torchvision_file_samples(dataset)
        if samples is None:
            samples = _export_torchvision(dataset, export_dir / split)
        for path, target in samples:
            base = root if path.resolve().is_relative_to(root.resolve()) else export_dir
            rel = os.path.relpath(path.resolve(), base.resolve())
            label = classes[target] if target < len(classes) else str(target)
            listing.add(path, id_parts=(split, Path(rel).as_posix()), label=label, split=split)
    return listing


KARPATHY_SPLITS = ("train", "val", "test", "restval")


def _list_karpathy(name: str, spec: dict, export_dir: Path) -> Listing:
    """Karpathy's split JSON (``dataset_flickr30k.json``, ``dataset_coco.json``): one row per (image, caption).

    The image is ``root/[filepath/]filename`` (COCO gives filepath, e.g. ``val2014``); the label is that relative
    path, so retrieval groups the (usually five) captions of an image. Ids hash (relative path, caption) as for
    the csv kind. An image whose file is missing is one reject (reason "missing file").
    """
    root = Path(spec["root"])
    file = resolve_path(root, spec["file"])
    try:
        data = json.loads(file.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise BadInputError(f"{name}: Karpathy split file {file} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInputError(f"{name}: {file} is not readable JSON: {error}") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise BadInputError(f"{name}: {file} has no 'images' list (not a Karpathy split file?)")
    ours: dict[str, str] = {}
    for split, theirs in spec["splits"].items():
        for karpathy_split in theirs:
            if karpathy_split in ours:
                raise BadInputError(
                    f"{name}.splits: Karpathy split {karpathy_split!r} is mapped to both "
                    f"{ours[karpathy_split]!r} and {split!r}"
                )
            ours[karpathy_split] = split
    listing = Listing()
    unused: Counter = Counter()
    duplicates = 0
    for number, image in enumerate(images):
        try:
            rel = (Path(image.get("filepath") or "") / image["filename"]).as_posix()
            sentences = image.get("sentences") or []
            karpathy_split = image.get("split", "")
        except (KeyError, TypeError, AttributeError):
            raise BadInputError(f"{name}: {file}: images[{number}] has no filename") from None
        split = ours.get(karpathy_split)
        if split is None:
            unused[karpathy_split] += 1
            continue
        path = root / rel
        if not path.is_file():
            listing.rejects.append(dict(path=str(path), split=split, reason="missing file"))
            continue
        seen: set[str] = set()
        for sentence in sentences:
            if not isinstance(sentence, dict):
                raise BadInputError(f"{name}: {file}: images[{number}].sentences holds {sentence!r}, not an object")
            caption = " ".join(str(sentence.get("raw") or " ".join(sentence.get("tokens") or [])).split())
            if not caption or caption in seen:
                duplicates += 1
                continue
            seen.add(caption)
            listing.add(path, id_parts=(rel, caption), caption=caption, label=rel, split=split)
    for karpathy_split, count in sorted(unused.items()):
        listing.notes.append(f"left out {count} image(s) of Karpathy split {karpathy_split!r} (not in splits)")
    if duplicates:
        listing.notes.append(f"left out {duplicates} empty or repeated caption(s)")
    return listing


LISTERS = {
    "imagefolder": _list_imagefolder,
    "csv": _list_csv,
    "torchvision": _list_torchvision,
    "karpathy": _list_karpathy,
    "shapes": _list_shapes,
}


def _unit_draw(seed: int, key: str) -> float:
    """A number in [0, 1) that depends only on (seed, key)."""
    return int.from_bytes(hashlib.sha1(f"holdout\0{seed}\0{key}".encode()).digest()[:8], "big") / 2**64


def apply_holdout(rows: list[dict], fraction: float, seed: int, *, stratify: bool = True) -> int:
    """Move a seeded ``fraction`` of the ``train`` rows to ``test`` in place; return how many rows moved.

    The unit moved is an image: rows sharing a path (several captions) move together, keyed by the smallest of
    their ids. Within each class (label; all units form one group when ``stratify`` is false), units are ranked
    by a hash of (seed, key) and the first ``round(fraction * n)`` go to test, but never the last one: a class
    with at least one train image keeps one. The choice depends only on the seed and the ids of the class, not on
    row order, shard counts or the root's location.
    """
    units: dict[str, list[dict]] = {}
    for row in rows:
        if row["split"] == "train":
            units.setdefault(row["path"], []).append(row)
    groups: dict[str, list[tuple[float, str, list[dict]]]] = {}
    for members in units.values():
        key = min(row["id"] for row in members)
        group = members[0]["label"] if stratify else ""
        groups.setdefault(group, []).append((_unit_draw(seed, key), key, members))
    moved = 0
    for entries in groups.values():
        entries.sort(key=lambda entry: entry[:2])
        count = min(int(fraction * len(entries) + 0.5), len(entries) - 1)
        for _, _, members in entries[:count]:
            for row in members:
                row["split"] = "test"
                moved += 1
    return moved


class VerifyCache:
    """Verification results kept beside the manifest, so an interrupted index of a large dataset resumes.

    Keyed by (path, size, mtime): a file that changed is verified again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.known: dict[str, tuple[int, int, str]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
                    self.known[parts[0]] = (int(parts[1]), int(parts[2]), parts[3])

    @staticmethod
    def _stamp(path: str) -> tuple[int, int] | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    def lookup(self, path: str) -> str | None:
        """The cached problem ('' for a good image), or None when the file must be verified."""
        entry, stamp = self.known.get(path), self._stamp(path)
        if entry is None or stamp is None or entry[:2] != stamp:
            return None
        return entry[2]

    def record(self, results: list[tuple[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            for path, problem in results:
                stamp = self._stamp(path)
                if stamp is not None and "\t" not in path and "\n" not in path:
                    clean = problem.replace("\t", " ").replace("\n", " ")
                    handle.write(f"{path}\t{stamp[0]}\t{stamp[1]}\t{clean}\n")


def verify_images(paths: list[str], workers: int, cache: VerifyCache | None = None) -> dict[str, str]:
    """Map each path to its problem ('' when the image decodes), decoding in ``workers`` processes."""
    problems: dict[str, str] = {}
    todo = []
    for path in paths:
        cached = cache.lookup(path) if cache else None
        if cached is None:
            todo.append(path)
        else:
            problems[path] = cached
    if problems:
        log.info("verification resumed: %d image(s) already verified, %d to go", len(problems), len(todo))
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(todo) > VERIFY_CHUNK else None
    try:
        with progress(total=len(todo), desc="verify", unit="img") as bar:
            for start in range(0, len(todo), VERIFY_CHUNK):
                chunk = todo[start : start + VERIFY_CHUNK]
                found = pool.map(image_problem, chunk, chunksize=32) if pool else map(image_problem, chunk)
                results = [(path, problem or "") for path, problem in zip(chunk, found)]
                problems.update(results)
                if cache:
                    cache.record(results)
                bar.update(len(chunk))
    finally:
        if pool:
            pool.shutdown()
    return problems


def index_dataset(name: str, spec: dict, out_dir: str | Path, workers: int = 1) -> pd.DataFrame:
    """Write ``out_dir``/manifest.csv and rejects.csv for one dataset and return the manifest."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    listing = LISTERS[spec["kind"]](name, spec, out_dir / "images")
    for note in listing.notes:
        log.info("%s: %s", name, note)
    paths = [row["path"] for row in listing.rows] + [row["mask"] for row in listing.rows if row["mask"]]
    problems = verify_images(paths, workers, VerifyCache(out_dir / "verify_cache.tsv"))
    rows, unusable = _usable_rows(listing.rows, problems)
    rejects = list(listing.rejects) + unusable + _lost_classes(listing.rows, rows)
    if spec.get("holdout"):
        seed = spec.get("holdout_seed", 0)
        moved = apply_holdout(rows, spec["holdout"], seed, stratify=spec["kind"] != "karpathy")
        log.info("%s: holdout %.3g (seed %d): moved %d train row(s) to test", name, spec["holdout"], seed, moved)
    ids = Counter(row["id"] for row in rows)
    clashes = [key for key, count in ids.items() if count > 1]
    if clashes:
        raise BadInputError(f"{name}: {len(clashes)} id collision(s), e.g. {clashes[0]}; report this as a bug")
    manifest = pd.DataFrame(rows, columns=MANIFEST.column_names)
    reject_frame = pd.DataFrame(rejects, columns=REJECTS.column_names)
    REJECTS.write(reject_frame, out_dir / "rejects.csv")
    elapsed = time.perf_counter() - started
    _log_index_summary(name, len(listing.rows) + len(listing.rejects), manifest, reject_frame, len(paths), elapsed)
    bad = reject_frame[~reject_frame["reason"].str.startswith(NOT_AN_IMAGE)]
    if len(bad) and spec["on_bad_image"] == "error":
        listed = "\n".join(f"  {r.path}: {r.reason}" for r in bad.itertuples())
        raise BadInputError(
            f"{name}: {len(bad)} bad image(s), missing file(s) or empty class(es) and on_bad_image is 'error' "
            f"(set it to 'skip' to index without them); listed in {out_dir / 'rejects.csv'}:\n{listed}"
        )
    if manifest.empty:
        raise BadInputError(f"{name}: no usable image found under {dataset_root(name, spec)}")
    MANIFEST.write(manifest, out_dir / "manifest.csv")
    return manifest


def _usable_rows(candidates: list[dict], problems: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """The candidate rows whose image and mask (if any) decode, and a reject for each of the others."""
    usable, rejects = [], []
    for row in candidates:
        problem = problems[row["path"]]
        if not problem and row["mask"] and problems[row["mask"]]:
            problem = f"its mask {row['mask']}: {problems[row['mask']]}"
        if problem:
            rejects.append(dict(path=row["path"], split=row["split"], reason=problem))
        else:
            usable.append(row)
    return usable, rejects


def _log_index_summary(
    name: str, candidates: int, manifest: pd.DataFrame, reject_frame: pd.DataFrame, verified: int, elapsed: float
) -> None:
    """Log the counts of an index (with the rate of the ``verified`` files), per split, and per kind of reject."""
    log.info(
        "%s: %d candidate(s), %d accepted, %d rejected, in %.1f s (%.0f images/s)",
        name,
        candidates,
        len(manifest),
        len(reject_frame),
        elapsed,
        verified / max(elapsed, 1e-9),
    )
    for split, count in sorted(Counter(manifest["split"]).items()):
        log.info(
            "%s: split %s: %d image(s), %d label(s)",
            name,
            split,
            count,
            manifest.loc[manifest["split"] == split, "label"].nunique(),
        )
    for reason, count in Counter(_reason_kind(r) for r in reject_frame["reason"]).most_common():
        log.info("%s: rejected %d: %s", name, count, reason)


def _lost_classes(candidates: list[dict], accepted: list[dict]) -> list[dict]:
    """A reject per (split, class) that had candidate images and kept none (every one unreadable): the class
    disappears from the split, which changes its label set, so it is named."""
    kept = {(row["split"], row["label"]) for row in accepted}
    lost: dict[tuple[str, str], list[str]] = {}
    for row in candidates:
        if row["label"] != "" and (row["split"], row["label"]) not in kept:
            lost.setdefault((row["split"], row["label"]), []).append(row["path"])
    return [
        dict(
            path=os.path.commonpath(paths) if len(paths) > 1 else str(Path(paths[0]).parent),
            split=split,
            reason=f"{EMPTY_CLASS}: none of its {len(paths)} image(s) is usable (class {label!r})",
        )
        for (split, label), paths in sorted(lost.items())
    ]


def _reason_kind(reason: str) -> str:
    return reason.split(" (CSV line")[0].split(":")[0]
