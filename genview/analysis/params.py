"""Per-shard outputs of the analysis: caption complexity, and the merged generation parameters."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Callable

import pandas as pd

from genview.analysis.complexity import guidance_for, lexical_scores, llm_scores
from genview.errors import BadInputError
from genview.io import atomic_path

log = logging.getLogger(__name__)

PARAMS_COLUMNS = ["id", "fg_ratio", "noise_level", "complexity", "guidance_scale", "complexity_source", "mask_iou"]


def _read(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except FileNotFoundError:
        raise BadInputError(f"file not found: {path}") from None


def complexity_shard(
    shard_csv: str | Path,
    out_csv: str | Path,
    *,
    guidance_for_score: dict,
    generate: Callable[[list[dict]], str] | None = None,
    attempts: int = 5,
) -> pd.DataFrame:
    """Score every caption of a shard (with the chat model behind ``generate``, else lexically) and write
    id, complexity, guidance_scale, complexity_source, llm_attempts."""
    shard = _read(shard_csv)
    captions = list(shard["caption"])
    results = lexical_scores(captions) if generate is None else llm_scores(captions, generate, attempts)
    frame = pd.DataFrame(
        {
            "id": shard["id"],
            "complexity": [r.score for r in results],
            "guidance_scale": [guidance_for(r.score, guidance_for_score) for r in results],
            "complexity_source": [r.source for r in results],
            "llm_attempts": [r.attempts for r in results],
        }
    )
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("%s: complexity scores %s; sources %s", shard_csv, dict(sorted(Counter(frame.complexity).items())),
             dict(Counter(frame.complexity_source)))
    return frame


def merge_params(
    shard_csv: str | Path, out_csv: str | Path, *, foreground_csv: str | Path | None, complexity_csv: str | Path | None
) -> pd.DataFrame:
    """Join a shard's foreground and complexity results into the params CSV; parts not computed stay empty."""
    merged = _read(shard_csv)[["id"]]
    for part in (foreground_csv, complexity_csv):
        if part is not None:
            frame = _read(part)
            missing = set(merged["id"]) - set(frame["id"])
            if missing:
                raise BadInputError(f"{part}: {len(missing)} id(s) of {shard_csv} missing, e.g. {sorted(missing)[0]}")
            merged = merged.merge(frame, on="id", how="left")
    merged = merged.reindex(columns=PARAMS_COLUMNS)
    with atomic_path(out_csv) as tmp:
        merged.to_csv(tmp, index=False)
    return merged
