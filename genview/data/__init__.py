"""Datasets: the generated `shapes` set, image loading, indexing into manifests and sharding.

This module stays import-light: the Snakefile reads ``dataset_root`` at parse time.
"""

from __future__ import annotations

SHAPES_ROOT = "results/datasets/{name}"
# Where a dataset with `synthetic` set is written (its root must say so), and the file written last there.
SYNTHETIC_ROOT = SHAPES_ROOT
SYNTHETIC_MARKER = "synthetic.json"
# The settings a synthetic dataset's files depend on (what genview.data.synthetic reads); the rest of its entry
# (shards, sources, holdout, class subset, ...) applies when it is indexed or used.
SYNTHETIC_LAYOUT_KEYS = (
    "kind",
    "root",
    "synthetic",
    "splits",
    "captions",
    "name",
    "file",
    "image_column",
    "caption_column",
    "label_column",
    "split_column",
    "mask_column",
)


def dataset_root(name: str, spec: dict) -> str:
    """Where a dataset's files live: its configured root, or the folder the workflow generates `shapes` into."""
    if spec["kind"] == "shapes":
        return SHAPES_ROOT.format(name=name)
    return spec["root"]
