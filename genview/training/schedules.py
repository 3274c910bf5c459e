"""Per-iteration schedules: learning rate (linear warm-up then half-cosine) and momentum-encoder EMA."""

from __future__ import annotations

import math


def learning_rate(step: int, *, base_lr: float, total_steps: int, warmup_steps: int, min_lr: float = 0.0) -> float:
    """Linear warm-up from 0 over ``warmup_steps``, then a half-cosine from ``base_lr`` to ``min_lr``."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def ema_momentum(step: int, *, base: float, total_steps: int, schedule: str) -> float:
    """BYOL/MoCo v3: cosine from ``base`` to 1 over training; MoCo v2: constant."""
    if schedule == "constant":
        return base
    return 1.0 - (1.0 - base) * 0.5 * (1.0 + math.cos(math.pi * min(step / max(1, total_steps), 1.0)))
