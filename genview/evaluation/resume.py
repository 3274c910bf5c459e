"""Resume points of long evaluation loops (the 90-epoch linear probe, semi-supervised fine-tuning).

A protocol saves its state after every epoch beside its result file; a rerun of the same evaluation continues from
it, and a state made under other settings, another checkpoint or other features is ignored (its stamp differs).
States load with ``weights_only=True``: tensors and plain values only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from genview.io import atomic_path, settings_stamp

log = logging.getLogger(__name__)


class EpochResume:
    def __init__(self, path: str | Path | None, stamp: dict):
        self.path = Path(path) if path else None
        self.stamp = settings_stamp(stamp)

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("stamp") != self.stamp:
            log.warning("%s was made under other settings or inputs; starting over", self.path)
            return None
        log.info("resuming from %s", self.path)
        return state

    def save(self, state: dict) -> None:
        if self.path is not None:
            with atomic_path(self.path) as tmp:
                torch.save({**state, "stamp": self.stamp}, tmp)

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
