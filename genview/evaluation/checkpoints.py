"""Reading pre-training checkpoints; torch only, so protocols on cached features start quickly."""

from __future__ import annotations

from pathlib import Path

import torch

from genview.errors import BadInputError


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError) as error:
        raise BadInputError(f"cannot read checkpoint {path}: {error}") from None
    if checkpoint.get("format") != 1:
        raise BadInputError(f"{path}: not a genview pre-training checkpoint (format {checkpoint.get('format')!r})")
    return checkpoint


def checkpoint_experiment(path: str | Path) -> dict:
    """The resolved experiment a checkpoint was trained from."""
    return read_checkpoint(path)["experiment"]
