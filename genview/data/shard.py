"""Split a manifest's rows of one split into exactly ``num_shards`` balanced, deterministic shard files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from genview.contracts import MANIFEST, SHARD
from genview.errors import BadInputError

log = logging.getLogger(__name__)


def shard_rows(manifest: pd.DataFrame, num_shards: int, split: str = "train") -> list[pd.DataFrame]:
    """Rows of ``split`` ordered by id, cut into ``num_shards`` contiguous parts whose sizes differ by at most one.

    Ids are content hashes, so id order mixes classes evenly across shards and does not depend on row order.
    """
    if num_shards < 1:
        raise BadInputError(f"num_shards must be at least 1, got {num_shards}")
    rows = manifest[manifest["split"] == split].sort_values("id", kind="stable").reset_index(drop=True)
    return [rows.iloc[part] for part in np.array_split(np.arange(len(rows)), num_shards)]


def write_shards(manifest_path: str | Path, num_shards: int, out_dir: str | Path, split: str = "train") -> list[Path]:
    manifest = MANIFEST.read(manifest_path)
    shards = shard_rows(manifest, num_shards, split)
    if len(shards[-1]) == 0:  # an empty shard would make empty analysis and generation jobs
        raise BadInputError(
            f"{manifest_path}: {sum(map(len, shards))} {split} image(s) for num_shards {num_shards}: set the "
            f"dataset's num_shards to at most {max(1, sum(map(len, shards)))}"
        )
    paths = []
    for index, rows in enumerate(shards):
        path = Path(out_dir) / f"{index}.csv"
        SHARD.write(rows, path)
        paths.append(path)
    log.info(
        "%s: %d %s row(s) in %d shard(s) of %d-%d",
        manifest_path,
        sum(map(len, shards)),
        split,
        num_shards,
        min(map(len, shards)),
        max(map(len, shards)),
    )
    return paths
