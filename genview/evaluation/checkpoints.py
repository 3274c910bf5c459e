"""Reading pre-training checkpoints; torch only, so protocols on cached features start quickly."""

from __future__ import annotations

import shlex
from pathlib import Path

import torch

from genview.errors import BadInputError
from genview.io import digest_problem


def retrain_advice(path: str | Path) -> str:
    folder = Path(path).parent
    return (
        f"its evaluation results are kept. To retrain, delete {folder} (the checkpoint is write-protected: "
        f"`rm -rf {shlex.quote(str(folder))}`) and run again"
    )


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    problem = digest_problem(path, full=True)
    if problem:
        raise BadInputError(f"checkpoint {path}: {problem}; {retrain_advice(path)}")
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
