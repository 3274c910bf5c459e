"""Shared figure plumbing: an Agg figure (no display needed) and an atomic, reproducible PNG."""

from __future__ import annotations

import logging
import os

import numpy as np

from genview.io import atomic_path

log = logging.getLogger(__name__)


def new_figure(rows: int, columns: int, panel: tuple[float, float], title: str | None = None):
    """A constrained-layout figure of ``rows`` x ``columns`` panels of ``panel`` inches; returns (figure, axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(panel[0] * columns, panel[1] * rows + (0.5 if title else 0)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure, axes


def save_png(figure, path: str | os.PathLike, dpi: int = 110) -> None:
    # No time stamp in the metadata: the same inputs give the same bytes.
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    log.info("wrote %s", path)  # the summary line of every figure command


def show_image(axis, image, title: str | None = None, frame: str | None = None) -> None:
    """An image panel without ticks; ``frame`` colours its border (e.g. to mark the adaptive choice)."""
    axis.imshow(np.asarray(image))
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, fontsize=8)
    for spine in axis.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)
