"""Quality audit: how GenView's pair quality ``q = cos(fg) − cos(bg)`` is distributed for each view source, and
which (real image, generated view) pairs get the highest and lowest weights."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

from genview.contracts import MANIFEST, QUALITY_SCORES, VIEWS
from genview.data.images import load_rgb
from genview.errors import BadInputError
from genview.quality.encoder import QualityScorer, load_centre_crop
from genview.report.figures import new_figure, save_png, show_image
from genview.runtime.progress import progress


def read_pairs(
    view_manifests: list[str | os.PathLike], manifest_csv: str | os.PathLike, sample: int, seed: int
) -> pd.DataFrame:
    """(id, source, real, view) for at most ``sample`` seeded-random images per source."""
    real = MANIFEST.read(manifest_csv, need=("id", "path")).set_index("id")["path"]
    frames = []
    for path in view_manifests:
        views = VIEWS.read(path, need=("id", "source", "view", "sample"))
        frames.append(views[views["sample"] == 0][["id", "source", "view"]])
    pairs = pd.concat(frames, ignore_index=True)
    unknown = sorted(set(pairs["id"]) - set(real.index))
    if unknown:
        raise BadInputError(f"{manifest_csv} has no image for view id(s) {unknown[:5]}")
    pairs["real"] = pairs["id"].map(real)
    chosen = [
        group.sample(n=min(sample, len(group)), random_state=seed).sort_values("id")
        for _, group in pairs.groupby("source", sort=True)
    ]
    if not chosen:
        raise BadInputError("no generated views to audit")
    return pd.concat(chosen, ignore_index=True)


def score_pairs(pairs: pd.DataFrame, scorer: QualityScorer, batch_size: int = 64) -> np.ndarray:
    scores = []
    with progress(total=len(pairs), desc="quality scores", unit="pair") as bar:
        for start in range(0, len(pairs), batch_size):
            batch = pairs.iloc[start : start + batch_size]
            real = torch.stack([load_centre_crop(path, scorer.image_size) for path in batch["real"]])
            views = torch.stack([load_centre_crop(path, scorer.image_size) for path in batch["view"]])
            scores.append(scorer.pair_quality(real, views).cpu().numpy())
            bar.update(len(batch))
    return np.concatenate(scores).astype(np.float64)


def audit_figure(pairs: pd.DataFrame, out_png: str | os.PathLike, *, extremes: int, title: str) -> None:
    """Left: the quality histogram per source. Right: the ``extremes`` highest and lowest pairs of all sources."""
    ranked = pairs.sort_values(["quality", "id", "source"], ascending=[False, True, True], kind="stable")
    shown = [("highest", row) for row in ranked.head(extremes).itertuples()]
    shown += [("lowest", row) for row in ranked.tail(extremes).iloc[::-1].itertuples()]
    figure, axes = new_figure(2, 2 + len(shown), (1.7, 1.9), title)
    grid = axes[0, 0].get_subplotspec().get_gridspec()
    for axis in axes[:, :2].ravel():
        axis.remove()
    histogram = figure.add_subplot(grid[:, :2])  # the histogram spans two columns of both rows
    bins = np.linspace(pairs["quality"].min(), pairs["quality"].max() + 1e-9, 21)
    for index, (source, group) in enumerate(pairs.groupby("source", sort=True)):
        histogram.hist(
            group["quality"],
            bins=bins,
            histtype="step",
            color=f"C{index}",
            label=f"{source} (n={len(group)}, mean {group['quality'].mean():.3f})",
        )
    histogram.set_xlabel("q = cos(fg) − cos(bg)", fontsize=8)
    histogram.set_ylabel("pairs", fontsize=8)
    histogram.tick_params(labelsize=7)
    histogram.legend(fontsize=7, loc="upper left")
    for column, (rank, row) in enumerate(shown, start=2):
        show_image(axes[0, column], load_rgb(row.real), f"{rank}: real")
        show_image(axes[1, column], load_rgb(row.view), f"{row.source} q={row.quality:.3f}")
    save_png(figure, out_png)


def quality_audit(
    view_manifests: list[str | os.PathLike],
    manifest_csv: str | os.PathLike,
    scorer: QualityScorer,
    out_png: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    sample: int = 256,
    extremes: int = 3,
    seed: int = 0,
    title: str = "Quality of (real, generated) pairs",
) -> pd.DataFrame:
    pairs = read_pairs(view_manifests, manifest_csv, sample, seed)
    pairs["quality"] = score_pairs(pairs, scorer)
    QUALITY_SCORES.write(pairs, out_csv, float_format="%.6g")
    audit_figure(pairs, out_png, extremes=extremes, title=title)
    return pairs
