"""Features cached per (experiment, dataset): every protocol that reads frozen features reuses one extraction.

The npz holds, per split S of the manifest: ``S/features`` (backbone features of the centre crop), ``S/labels``
(integers in ``label_names`` order), ``S/ids``, ``S/paths``, ``S/captions`` and, for vision-language models,
``S/image_embeddings``; plus ``label_names``, ``class_names`` (readable, for zero-shot prompts) and the
``checkpoint_fingerprint`` of the checkpoint they came from (a protocol refuses features of another checkpoint).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from genview.errors import BadInputError
from genview.io import atomic_path, file_fingerprint
from genview.runtime.progress import progress

log = logging.getLogger(__name__)


def label_order_and_names(dataset: str, spec: dict, labels: list[str]) -> tuple[list[str], list[str]]:
    from genview.evaluation.catalog import class_names, label_order

    order = label_order(dataset, spec, labels)
    return order, class_names(dataset, spec, order)


def extract_features(
    checkpoint: str | Path,
    manifest_csv: str | Path,
    dataset: str,
    spec: dict,
    out_npz: str | Path,
    *,
    batch_size: int = 256,
    num_workers: int = 4,
    device: str = "cpu",
) -> None:
    from genview.evaluation.pretrained import (
        encode_images,
        image_loader,
        load_checkpoint,
        read_manifest,
        test_transform,
    )

    model, experiment = load_checkpoint(checkpoint, device)
    manifest = read_manifest(manifest_csv)
    order, names = label_order_and_names(dataset, spec, sorted(set(manifest["label"])))
    index = {label: i for i, label in enumerate(order)}
    transform = test_transform(experiment["recipe"]["image_size"])
    arrays: dict[str, np.ndarray] = {
        "label_names": np.array(order),
        "class_names": np.array(names),
        "checkpoint_fingerprint": np.array(file_fingerprint(checkpoint)),
    }
    for split, rows in manifest.groupby("split", sort=True):
        unknown = sorted(set(rows["label"]) - set(index))
        if unknown:
            raise BadInputError(f"{manifest_csv}: labels {unknown[:5]} of split {split} are not in the label order")
        labels = np.array([index[label] for label in rows["label"]], dtype=np.int64)
        loader = image_loader(rows["path"], labels, transform, batch_size=batch_size, num_workers=num_workers)
        with progress(loader, desc=f"features {dataset} {split}", unit="batch") as batches:
            encoded = encode_images(model, batches, device)
        for key, value in encoded.items():
            arrays[f"{split}/{key}"] = value
        arrays[f"{split}/labels"] = labels
        for column in ("id", "path", "caption"):  # str arrays: the cache loads without pickle
            arrays[f"{split}/{column}s"] = np.asarray(rows[column], dtype=str)
        log.info("%s %s: %d image(s), features %s", dataset, split, len(rows), arrays[f"{split}/features"].shape)
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


class FeatureCache:
    """Read access to an :func:`extract_features` file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self.arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError) as error:
            raise BadInputError(f"cannot read feature cache {path}: {error}") from None
        self.label_names = list(self.arrays["label_names"])
        self.class_names = list(self.arrays["class_names"])

    def splits(self) -> list[str]:
        return sorted({key.split("/")[0] for key in self.arrays if "/" in key})

    def get(self, split: str, key: str) -> np.ndarray:
        name = f"{split}/{key}"
        if name not in self.arrays:
            raise BadInputError(f"{self.path} has no {name} (splits: {', '.join(self.splits())})")
        return self.arrays[name]
