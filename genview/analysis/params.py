"""Per-shard analysis: caption complexity, and the generation parameters joined from the analysis parts."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from genview.analysis.complexity import guidance_for, lexical_scores, llm_scores
from genview.contracts import COMPLEXITY, FOREGROUND, SHARD
from genview.errors import BadInputError

log = logging.getLogger(__name__)


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
    shard = SHARD.read(shard_csv, need=("id", "caption"))
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
    COMPLEXITY.write(frame, out_csv)
    log.info(
        "%s: complexity scores %s; sources %s",
        shard_csv,
        dict(sorted(Counter(frame.complexity).items())),
        dict(Counter(frame.complexity_source)),
    )
    return frame


def read_params(
    shard_csv: str | Path, *, foreground_csv: str | Path | None = None, complexity_csv: str | Path | None = None
) -> pd.DataFrame:
    """A shard's adaptive generation parameters: its ids joined with the analysis parts the config computes
    (foreground: fg_ratio, noise_level, mask_iou; complexity: complexity, guidance_scale, complexity_source). Every
    reader joins the parts itself: no merged file, so no job per shard only to merge them."""
    merged = SHARD.read(shard_csv, need=("id",))[["id"]]
    for part, contract in ((foreground_csv, FOREGROUND), (complexity_csv, COMPLEXITY)):
        if part is not None:
            frame = contract.read(part, need=("id",))
            missing = set(merged["id"]) - set(frame["id"])
            if missing:
                raise BadInputError(f"{part}: {len(missing)} id(s) of {shard_csv} missing, e.g. {sorted(missing)[0]}")
            merged = merged.merge(frame, on="id", how="left")
    return merged
