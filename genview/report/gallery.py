"""View galleries like the paper's Figures 4-5: the same image (or caption) generated at every noise level (or
guidance scale), beside the source and its foreground mask, with the adaptive choice framed.

Each cell is generated with the seed of the image's real view (:func:`genview.generation.views.view_seed`), so
the framed cell shows the view the training used, at the resolution it was generated.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from genview.analysis.params import read_params
from genview.contracts import SHARD
from genview.data.images import load_rgb
from genview.errors import BadInputError
from genview.generation.views import ViewTask, run_pipeline, view_seed
from genview.report.figures import new_figure, save_png, show_image
from genview.runtime.progress import progress

ADAPTIVE_FRAME = "tab:red"


def spread_rows(params: pd.DataFrame, column: str, count: int) -> pd.DataFrame:
    """``count`` rows spread evenly over the sorted values of ``column`` (smallest and largest included)."""
    ordered = params.dropna(subset=[column]).sort_values([column, "id"], kind="stable").reset_index(drop=True)
    if ordered.empty:
        raise BadInputError(f"no rows with a {column} to choose gallery images from")
    picks = np.unique(np.linspace(0, len(ordered) - 1, num=min(count, len(ordered))).round().astype(int))
    return ordered.iloc[picks]


def _generate(
    pipeline, source: str, rows: pd.DataFrame, images, steps: int, seed: int, *, noise_level, guidance_scale: float
) -> list:
    """One view per row at one setting (a pipeline call takes one noise level and guidance for all its images),
    each with the seed of the row's training view."""
    tasks = [
        ViewTask(
            id=row.id,
            path=row.path,
            caption=row.caption,
            sample=0,
            noise_level=noise_level,
            guidance_scale=float(guidance_scale),
            seed=view_seed(seed, source, row.id, 0),
            stamp="",
            out=None,
        )
        for row in rows.itertuples()
    ]
    return run_pipeline(pipeline, source, tasks, images, steps)


def _overlay(image, token_mask: np.ndarray) -> np.ndarray:
    """The image with its above-threshold tokens tinted red."""
    from PIL import Image

    side = min(image.size)
    square = image.crop(
        ((image.width - side) // 2, (image.height - side) // 2, (image.width + side) // 2, (image.height + side) // 2)
    )
    mask = Image.fromarray(token_mask.astype(np.uint8) * 255).resize((side, side), Image.NEAREST)
    pixels = np.asarray(square, dtype=np.float32)
    red = np.array([255.0, 0.0, 0.0])
    tinted = np.where(np.asarray(mask)[..., None] > 0, 0.55 * pixels + 0.45 * red, pixels)
    return tinted.astype(np.uint8)


def image_gallery(
    rows: pd.DataFrame,
    token_masks: list,
    pipeline,
    *,
    noise_levels: list[int],
    guidance_scale: float,
    steps: int,
    seed: int,
    out_png: str | os.PathLike,
    title: str,
) -> None:
    """IC views of each row at every noise level; columns: source, foreground mask, one per level."""
    sources = [load_rgb(path) for path in rows["path"]]
    with progress(noise_levels, desc="IC gallery", unit="noise level") as levels:
        views = {
            int(level): _generate(
                pipeline, "ic", rows, sources, steps, seed, noise_level=int(level), guidance_scale=guidance_scale
            )
            for level in levels
        }
    figure, axes = new_figure(len(rows), 2 + len(noise_levels), (1.6, 1.75), title)
    for index, (axis_row, row, token_mask) in enumerate(zip(axes, rows.itertuples(), token_masks)):
        show_image(axis_row[0], sources[index], "source")
        show_image(axis_row[1], _overlay(sources[index], np.asarray(token_mask)), f"fg ratio {row.fg_ratio:.2f}")
        for axis, level in zip(axis_row[2:], views):
            adaptive = level == int(row.noise_level)
            show_image(
                axis,
                views[level][index],
                f"noise {level}" + (" (adaptive)" if adaptive else ""),
                ADAPTIVE_FRAME if adaptive else None,
            )
    save_png(figure, out_png)


def text_gallery(
    rows: pd.DataFrame,
    pipeline,
    *,
    guidance_scales: list[float],
    steps: int,
    seed: int,
    out_png: str | os.PathLike,
    title: str,
) -> None:
    """TC views of each row's caption at every guidance scale; the caption and its complexity label the row."""
    with progress(guidance_scales, desc="TC gallery", unit="guidance scale") as scales:
        views = {
            float(scale): _generate(pipeline, "tc", rows, None, steps, seed, noise_level=None, guidance_scale=scale)
            for scale in scales
        }
    figure, axes = new_figure(len(rows), len(guidance_scales), (1.8, 1.9), title)
    for index, (axis_row, row) in enumerate(zip(axes, rows.itertuples())):
        for axis, scale in zip(axis_row, views):
            adaptive = scale == float(row.guidance_scale)
            show_image(
                axis,
                views[scale][index],
                f"guidance {scale:g}" + (" (adaptive)" if adaptive else ""),
                ADAPTIVE_FRAME if adaptive else None,
            )
        caption = row.caption if len(row.caption) <= 60 else row.caption[:57] + "..."
        axis_row[0].set_ylabel(f"complexity {int(row.complexity)}\n{caption}", fontsize=7, wrap=True)
    save_png(figure, out_png)


def gallery_rows(
    shard_csv: str | os.PathLike,
    *,
    foreground_csv: str | os.PathLike | None = None,
    complexity_csv: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The shard's rows with the analysis parameters its parts give (fg_ratio, noise_level; complexity,
    guidance_scale)."""
    params = read_params(shard_csv, foreground_csv=foreground_csv, complexity_csv=complexity_csv)
    return SHARD.read(shard_csv).merge(params, on="id", how="inner", validate="one_to_one")
