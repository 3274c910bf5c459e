"""Foreground ratio of every training image, which sets its unCLIP noise level (docs/method.md §1; official
``extract_features_pca.py``, ``calculate_fgratio.py``, ``generate_ada_noise_level.py``).

PC-1 of the foreground encoder's patch tokens, its threshold and its sign are fitted on a sample of training images
(the math is in :mod:`genview.analysis.pc1`). Per image: foreground ratio = share of its tokens with
``tokens @ vector > threshold``, binned right-closed into a noise level.

Pure functions of the ratio first, then the two file-level steps the workflow runs (fit on a sample, one shard).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pandas as pd
import torch
from PIL import Image

from genview.analysis.pc1 import (
    SIGNS,
    TokenMoments,
    choose_fit_sample,
    choose_sign,
    float64_array,
    mean_centre_distance_above,
    project,
    threshold_from_histogram,
)
from genview.contracts import FOREGROUND, MANIFEST, SHARD
from genview.data.images import load_rgb
from genview.errors import BadInputError, ConfigError
from genview.io import atomic_path
from genview.models import check_encoder_stamp, encoder_stamp
from genview.models.open_clip_models import load_open_clip, patch_tokens, token_grid
from genview.runtime.progress import progress

log = logging.getLogger(__name__)

OVERLAY_IMAGES = 8


# --- Pure functions -----------------------------------------------------------------------------------------


#: analysis.fg_flipped_threshold: how the threshold is taken when PC-1 is used flipped (see fit_foreground).
FLIPPED_THRESHOLD_MODES = ("refit", "keep")


def foreground_ratio(projections: torch.Tensor, threshold: float) -> torch.Tensor:
    """Share of each image's tokens above ``threshold``: (B, T) -> (B,) float64.

    float64 so that a ratio exactly on a noise edge (e.g. 0.2 = 3/15) compares equal to it; in float32 it
    would land just above the edge, in the next noise bin.
    """
    return (projections > threshold).sum(-1).double() / projections.shape[-1]


def noise_level_for(ratio, edges, levels):
    """Noise level of a foreground ratio; bins are right-closed on ``edges`` (an edge is in the lower bin).

    A scalar gives an int; an array or tensor gives a numpy array. Ratios outside [0, 1] raise ValueError.
    """
    edges = np.asarray(edges, dtype=np.float64)
    levels = np.asarray(levels)
    if len(levels) != len(edges) + 1 or np.any(np.diff(edges) <= 0):
        raise ValueError(
            f"need increasing edges and one level more than edges, got {edges.tolist()}, {levels.tolist()}"
        )
    values = float64_array(ratio)
    outside = ~((values >= 0) & (values <= 1))
    if outside.any():
        raise ValueError(f"foreground ratio must be in [0, 1], got {values[outside].ravel()[:5].tolist()}")
    chosen = levels[np.searchsorted(edges, values, side="left")]
    return int(chosen) if chosen.ndim == 0 else chosen


def token_masks_to_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU (B,) of token-grid masks ``pred`` (B, h, w), upsampled (nearest) to the masks ``gt`` (B, H, W).

    Two empty masks agree perfectly: IoU 1.
    """
    upsampled = torch.nn.functional.interpolate(pred[:, None].float(), size=tuple(gt.shape[-2:]), mode="nearest")
    upsampled = upsampled[:, 0] > 0.5
    intersection = (upsampled & gt).sum((-2, -1)).double()
    union = (upsampled | gt).sum((-2, -1)).double()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


# --- Files --------------------------------------------------------------------------------------------------


def _load(path: str) -> Image.Image:
    try:
        return load_rgb(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadInputError(f"cannot read image {path}: {error}") from None


def _centre_square(array: np.ndarray) -> np.ndarray:
    """The centred square the encoder sees (CLIP preprocessing: shortest side resized, centre crop)."""
    h, w = array.shape[:2]
    side = min(h, w)
    top, left = int(round((h - side) / 2)), int(round((w - side) / 2))
    return array[top : top + side, left : left + side]


def _gt_mask(path: str) -> torch.Tensor:
    return torch.from_numpy(_centre_square(np.asarray(_load(path))[..., 0] > 127))


def _mask_iou(token_mask: torch.Tensor, mask_path: str) -> float:
    return float(token_masks_to_iou(token_mask[None], _gt_mask(mask_path)[None])[0])


def _encode(model, preprocess, paths: list[str], batch_size: int, device: str, desc: str):
    """Yield the patch tokens (B, T, D) of ``paths``, in order, ``batch_size`` images at a time."""
    with progress(total=len(paths), desc=desc, unit="img") as bar:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            images = torch.stack([preprocess(_load(path)) for path in batch]).to(device)
            with torch.no_grad():
                tokens = patch_tokens(model, images)
            bar.update(len(batch))
            yield tokens


def _save_overlay(path, sample: pd.DataFrame, token_masks: torch.Tensor, title: str) -> None:
    """Sample images with their above-threshold tokens in red and the ground-truth outline in green."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = min(OVERLAY_IMAGES, len(sample))
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(2.5 * columns, 2.5 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (row, token_mask) in zip(axes, zip(sample.head(count).itertuples(), token_masks)):
        image = _centre_square(np.asarray(_load(row.path)))
        side = image.shape[0]
        overlay = np.zeros((*token_mask.shape, 4))
        overlay[token_mask.numpy()] = (1.0, 0.0, 0.0, 0.45)
        axis.imshow(image)
        axis.imshow(overlay, extent=(0, side, side, 0), interpolation="nearest")
        if row.mask:
            axis.contour(_gt_mask(row.mask).numpy(), levels=[0.5], colors="lime", linewidths=1)
        axis.set_title(row.label or row.id, fontsize=8)
    for axis in axes:
        axis.set_axis_off()
    figure.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def fit_foreground(
    manifest_csv: str | os.PathLike,
    encoder: dict,
    out_npz: str | os.PathLike,
    overlay_png: str | os.PathLike,
    *,
    per_class: int = 10,
    sample_size: int = 10000,
    bins: int = 200,
    cdf: float = 0.65,
    sign: str | int = "auto",
    flipped_threshold: str = "refit",
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Fit PC-1, threshold and sign on a sample of the manifest's train split; write them and the overlay.

    ``flipped_threshold`` applies when the chosen sign is -1: ``refit`` takes the threshold at ``cdf`` of the
    flipped projections (about 1 - cdf of the tokens above it); ``keep`` is the official ``--mask-type lt``: the
    threshold of the unflipped projections, foreground = the tokens below it (about cdf of them). Either way the
    stored (vector, threshold) pair is used as ``tokens @ vector > threshold``. Returns what the npz holds.
    """
    _check_fit_options(sign, flipped_threshold)
    sample = choose_fit_sample(MANIFEST.read(manifest_csv), per_class=per_class, sample_size=sample_size, seed=seed)
    if sample.empty:
        raise BadInputError(f"{manifest_csv}: no train rows to fit the foreground PCA on")
    model, preprocess = load_open_clip(encoder, device)
    grid = token_grid(model)
    pc1, projections = _pc1_and_projections(model, preprocess, sample["path"].tolist(), batch_size, device)

    chosen, signed, threshold_mode, threshold = _sign_and_threshold(
        projections, grid, sign, flipped_threshold, bins, cdf
    )
    token_masks = (signed > threshold).reshape(-1, *grid)
    fit = {
        "vector": (chosen * pc1).cpu().numpy().astype(np.float32),
        "threshold": np.float64(threshold),
        "sign": np.int64(chosen),
        "threshold_mode": np.str_(threshold_mode),
        "encoder_stamp": np.str_(encoder_stamp(encoder, "fg_encoder")),
        "sample_ids": sample["id"].to_numpy(dtype=str),
        "cdf": np.float64(cdf),
        "bins": np.int64(bins),
        "grid": np.array(grid, dtype=np.int64),
    }
    log.info(
        "foreground fit: %d image(s) of %dx%d tokens, threshold %.6g (%s), sign %+d (%s), %.1f%% of tokens above",
        len(sample), *grid, threshold, threshold_mode, chosen, sign, 100 * float(token_masks.float().mean()),
    )  # fmt: skip
    _log_centre_distances(signed, grid, threshold, chosen, bins, cdf)
    mean_iou = _mean_mask_iou(token_masks, sample["mask"])
    if mean_iou is not None:
        fit["mean_iou"] = mean_iou

    with atomic_path(out_npz) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **fit)
    title = f"PC-1 sign {chosen:+d} ({sign}), threshold {threshold:.4g}; red: above it, green: ground truth"
    _save_overlay(overlay_png, sample, token_masks, title)
    return fit


def _check_fit_options(sign: str | int, flipped_threshold: str) -> None:
    if flipped_threshold not in FLIPPED_THRESHOLD_MODES:
        raise ConfigError(
            f"analysis.fg_flipped_threshold must be one of {', '.join(FLIPPED_THRESHOLD_MODES)}, "
            f"got {flipped_threshold!r}"
        )
    if sign not in SIGNS:
        raise ConfigError(f"analysis.fg_sign must be one of auto, 1, -1, got {sign!r}")


def _pc1_and_projections(model, preprocess, paths: list[str], batch_size: int, device: str):
    """PC-1 (D,) of the patch tokens of ``paths`` and their un-signed projections on it (N, T), on the CPU."""
    # Two passes over the sample instead of keeping its tokens: see TokenMoments.
    moments = TokenMoments()
    for tokens in _encode(model, preprocess, paths, batch_size, device, "fit PCA"):
        moments.add(tokens)
    pc1 = moments.pc1()
    projections = torch.cat(
        [project(tokens, pc1).cpu() for tokens in _encode(model, preprocess, paths, batch_size, device, "project")]
    )
    return pc1, projections


def _sign_and_threshold(
    projections: torch.Tensor, grid: tuple[int, int], sign: str | int, flipped_threshold: str, bins: int, cdf: float
) -> tuple[int, torch.Tensor, str, float]:
    """PC-1's sign (chosen when ``sign`` is auto), the signed projections, the threshold mode (``flipped_threshold``
    for sign -1, else refit) and the threshold of the signed projections under it (see fit_foreground)."""
    chosen = choose_sign(projections, grid, bins=bins, cdf=cdf) if sign == "auto" else int(sign)
    signed = chosen * projections
    threshold_mode = flipped_threshold if chosen < 0 else "refit"
    if threshold_mode == "keep":  # a < t  <=>  -a > -t, so the official `lt` mask is (-v, -t) under `>`
        threshold = -threshold_from_histogram(projections, bins, cdf)
    else:
        threshold = threshold_from_histogram(signed, bins, cdf)
    return chosen, signed, threshold_mode, threshold


def _log_centre_distances(
    signed: torch.Tensor, grid: tuple[int, int], threshold: float, chosen: int, bins: int, cdf: float
) -> None:
    """Log the foreground tokens' mean distance to the image centre under the fitted sign and threshold, and under
    the opposite sign with its own threshold (what :func:`~genview.analysis.pc1.choose_sign` compares)."""
    log.info(
        "foreground tokens' mean distance to the image centre: %.3f with sign %+d, %.3f with %+d",
        mean_centre_distance_above(signed, grid, threshold), chosen,
        mean_centre_distance_above(-signed, grid, threshold_from_histogram(-signed, bins, cdf)), -chosen,
    )  # fmt: skip


def _mean_mask_iou(token_masks: torch.Tensor, masks: pd.Series) -> np.float64 | None:
    """Mean IoU of the token masks with the ground-truth masks of the images that have one (logged); None when none
    has."""
    with_mask = [i for i, mask in enumerate(masks) if mask]
    if not with_mask:
        return None
    mean_iou = np.float64(np.mean([_mask_iou(token_masks[i], masks[i]) for i in with_mask]))
    log.info("foreground fit: mean IoU with ground-truth masks %.3f over %d image(s)",
             mean_iou, len(with_mask))  # fmt: skip
    return mean_iou


def load_fit(path: str | os.PathLike) -> dict:
    """The arrays :func:`fit_foreground` wrote."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise BadInputError(f"{path}: not a foreground fit: {error}") from None


def foreground_masks(
    paths: list[str],
    fit: dict,
    encoder: dict,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    fit_name: str = "the foreground fit",
    desc: str = "foreground",
) -> tuple[list[float], list[torch.Tensor]]:
    """Foreground ratio and token mask (h, w) of each image under a :func:`fit_foreground` fit."""
    vector, threshold = torch.from_numpy(fit["vector"]), float(fit["threshold"])
    grid = tuple(int(n) for n in fit["grid"])
    ratios: list[float] = []
    token_masks: list[torch.Tensor] = []
    if not paths:
        return ratios, token_masks
    model, preprocess = load_open_clip(encoder, device)
    if token_grid(model) != grid:
        raise BadInputError(
            f"{fit_name} was fitted on a {grid[0]}x{grid[1]} token grid, but models.fg_encoder gives "
            f"{token_grid(model)}; refit it with this encoder"
        )
    for tokens in _encode(model, preprocess, paths, batch_size, device, desc):
        if tokens.shape[-1] != len(vector):
            raise BadInputError(
                f"{fit_name} was fitted on {len(vector)}-d tokens; models.fg_encoder gives "
                f"{tokens.shape[-1]}-d, refit it with this encoder"
            )
        projections = project(tokens, vector)
        ratios.extend(foreground_ratio(projections, threshold).cpu().tolist())
        token_masks.extend((projections > threshold).reshape(-1, *grid).cpu())
    return ratios, token_masks


def foreground_shard(
    shard_csv: str | os.PathLike,
    fit_npz: str | os.PathLike,
    encoder: dict,
    out_csv: str | os.PathLike,
    *,
    noise_edges,
    noise_levels,
    batch_size: int = 64,
    device: str = "cpu",
) -> pd.DataFrame:
    """Write ``out_csv`` (id, fg_ratio, noise_level, mask_iou) for every row of one shard, and return it.

    ``mask_iou`` is empty for rows without a ground-truth mask.
    """
    rows = SHARD.read(shard_csv)
    fit = load_fit(fit_npz)
    check_encoder_stamp(fit, encoder, "fg_encoder", fit_npz)
    ratios, token_masks = foreground_masks(
        rows["path"].tolist(),
        fit,
        encoder,
        batch_size=batch_size,
        device=device,
        fit_name=str(fit_npz),
        desc=f"foreground {shard_csv}",
    )
    ious = [_mask_iou(token_mask, mask) if mask else math.nan for token_mask, mask in zip(token_masks, rows["mask"])]
    result = pd.DataFrame(
        {
            "id": rows["id"],
            "fg_ratio": np.array(ratios, dtype=np.float64),
            "noise_level": noise_level_for(np.array(ratios, dtype=np.float64), noise_edges, noise_levels),
            "mask_iou": np.array(ious, dtype=np.float64),
        },
    )
    FOREGROUND.write(result, out_csv)
    levels = result["noise_level"].value_counts().sort_index()
    log.info(
        "%s: %d image(s), mean foreground ratio %.3f, images per noise level: %s",
        shard_csv, len(result), result["fg_ratio"].mean(),
        ", ".join(f"{level}: {count}" for level, count in levels.items()) or "none",
    )  # fmt: skip
    if result["mask_iou"].notna().any():
        log.info("%s: mean IoU with ground-truth masks %.3f over %d image(s)",
                 shard_csv, result["mask_iou"].mean(), result["mask_iou"].notna().sum())  # fmt: skip
    return result
