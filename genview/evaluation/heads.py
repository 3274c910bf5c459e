"""The paper's linear protocol: on features of a frozen backbone, ten linear heads are trained at once, one per
base learning rate, with SGD (or LARS, the SimSiam probe; momentum 0.9, no weight decay) and a cosine schedule per
iteration; the reported top-1 is the best over heads and over epochs (each epoch ends with a test pass).

Training all learning rates on one pass over the data costs one backbone forward per batch instead of ten.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from genview.runtime.progress import progress

# The paper's sweep; each is scaled by batch size / 256.
PAPER_BASE_LRS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)

FeatureBatches = Iterable[tuple[torch.Tensor, torch.Tensor]]
log = logging.getLogger(__name__)


class LinearHeads(nn.Module):
    """``n_heads`` independent linear classifiers on one shared input; ``forward`` gives their logits
    (n_heads, N, C).

    Weights start from N(0, 0.01) and biases from 0 (MoCo's and MAE's linear probes). With ``use_bn`` the
    input first passes a BatchNorm without affine parameters (MAE's probe), which has nothing to learn and so
    does not couple the heads.
    """

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        n_heads: int,
        *,
        use_bn: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.norm = nn.BatchNorm1d(feature_dim, affine=False) if use_bn else nn.Identity()
        self.heads = nn.ModuleList(nn.Linear(feature_dim, num_classes) for _ in range(n_heads))
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.01, generator=generator)
            nn.init.zeros_(head.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = self.norm(features)
        return torch.stack([head(features) for head in self.heads])


def train_linear_heads(
    train_batches: Callable[[int], FeatureBatches],
    test_batches: Callable[[], FeatureBatches],
    *,
    feature_dim: int,
    num_classes: int,
    base_lrs: Sequence[float] = PAPER_BASE_LRS,
    batch_size: int,
    epochs: int,
    steps_per_epoch: int,
    device: torch.device | str,
    use_bn: bool = False,
    seed: int = 0,
    optimizer: str = "sgd",
    resume=None,
) -> dict:
    """Train one linear head per base lr on (features, labels) batches and return the best test top-1.

    ``train_batches(epoch)`` yields the training batches of an epoch (features of augmented images through the
    frozen backbone, or cached features); at most ``steps_per_epoch`` of them are used, as the cosine schedule
    (per iteration, to zero over ``epochs × steps_per_epoch``) is sized by it. ``test_batches()`` yields the
    test batches. Each head's lr is ``base_lr × batch_size / 256``; the loss is the sum of the heads'
    cross-entropies, so each head gets exactly the gradient of its own loss. The heads' initial weights come
    from ``seed``. ``optimizer`` "lars" scales each weight matrix's step by 0.001·|w|/|g| (biases unscaled), as
    the LARS of the SimSiam / MoCo v3 probes does without weight decay. ``resume`` (an
    :class:`genview.evaluation.resume.EpochResume`) keeps a resume point after every epoch; the global torch
    generator's state is part of it, so a resumed run draws the crops the uninterrupted one would.

    Returns ``top1`` (%, best over heads and epochs, as the paper reports), ``best_lr`` (its base lr),
    ``best_epoch`` (1-based), ``final_top1_by_head`` (%, after the last epoch, in ``base_lrs`` order),
    ``base_lrs``, ``epochs`` and ``final_state_dict`` (the heads' weights after the last epoch, on the CPU;
    not JSON).
    """
    device = torch.device(device)
    initial_weights = torch.Generator().manual_seed(seed)
    heads = LinearHeads(feature_dim, num_classes, len(base_lrs), use_bn=use_bn, generator=initial_weights)
    heads.to(device)
    optimizer = _head_optimizer(heads, base_lrs, batch_size, optimizer)
    total_steps = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))
    )
    start_epoch, best, top1_by_head = _load_resume_point(resume, heads, optimizer, schedule)
    with progress(desc="linear probe", total=total_steps, initial=start_epoch * steps_per_epoch, unit="step") as bar:
        for epoch in range(start_epoch, epochs):
            _train_epoch(heads, optimizer, schedule, islice(train_batches(epoch), steps_per_epoch), device, bar, epoch)
            top1_by_head = _top1_by_head(heads, test_batches(), device)
            best = _best_so_far(best, top1_by_head, base_lrs, epoch, epochs)
            if resume:
                _save_resume_point(resume, epoch + 1, heads, optimizer, schedule, best, top1_by_head)
    if resume:
        resume.finish()
    return {
        **best,
        "final_top1_by_head": top1_by_head,
        "base_lrs": [float(lr) for lr in base_lrs],
        "epochs": epochs,
        "final_state_dict": {name: value.detach().cpu() for name, value in heads.state_dict().items()},
    }


def _train_epoch(heads: LinearHeads, optimizer, schedule, batches: FeatureBatches, device, bar, epoch: int) -> None:
    """One step of every head per batch, each step advancing the per-iteration schedule."""
    heads.train()
    for features, labels in batches:
        logits = heads(features.to(device, non_blocking=True).float())
        labels = labels.to(device, non_blocking=True)
        loss = torch.stack([F.cross_entropy(head_logits, labels) for head_logits in logits]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        # The summed loss of the heads (one per base lr).
        bar.set_postfix(epoch=epoch + 1, loss=float(loss.detach()), refresh=False)
        bar.update()


def _best_so_far(best: dict, top1_by_head: list[float], base_lrs: Sequence[float], epoch: int, epochs: int) -> dict:
    """``best`` updated with the epoch's test top-1 of every head (and logged)."""
    # The paper (like MoCo's main_lincls) reports the best epoch of the best head.
    head = max(range(len(base_lrs)), key=lambda h: top1_by_head[h])
    if top1_by_head[head] > best["top1"]:
        best = {"top1": top1_by_head[head], "best_lr": float(base_lrs[head]), "best_epoch": epoch + 1}
    log.info(
        "linear probe epoch %d/%d: best head %.2f %% (base lr %g), best so far %.2f %%",
        epoch + 1,
        epochs,
        top1_by_head[head],
        base_lrs[head],
        best["top1"],
    )
    return best


def _load_resume_point(resume, heads: LinearHeads, optimizer, schedule) -> tuple[int, dict, list[float]]:
    """(first epoch to train, best so far, last test top-1 by head): restored into the heads, optimizer, schedule
    and global torch generator from the resume point where there is one, else a fresh start."""
    state = resume.load() if resume else None
    if state is None:
        return 0, {"top1": -1.0, "best_lr": None, "best_epoch": None}, []
    heads.load_state_dict(state["heads"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    return state["epoch"], state["best"], state["top1_by_head"]


def _save_resume_point(
    resume, epoch: int, heads: LinearHeads, optimizer, schedule, best: dict, top1_by_head: list[float]
) -> None:
    resume.save(
        dict(
            epoch=epoch,
            heads=heads.state_dict(),
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            rng=torch.get_rng_state(),
            best=best,
            top1_by_head=top1_by_head,
        )
    )


def _head_optimizer(heads: LinearHeads, base_lrs: Sequence[float], batch_size: int, kind: str):
    lrs = [base_lr * batch_size / 256 for base_lr in base_lrs]
    if kind == "sgd":
        groups = [{"params": head.parameters(), "lr": lr} for head, lr in zip(heads.heads, lrs)]
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=0.0)
    if kind == "lars":
        from timm.optim import Lars

        # timm adapts only groups with weight decay unless always_adapt; mmpretrain's probe (no weight decay, no
        # exclusions) adapts every parameter, the biases too.
        groups = [{"params": head.parameters(), "lr": lr} for head, lr in zip(heads.heads, lrs)]
        return Lars(groups, momentum=0.9, weight_decay=0.0, trust_coeff=0.001, always_adapt=True)
    raise ValueError(f"unknown linear-probe optimizer {kind!r} (sgd or lars)")


def _top1_by_head(heads: LinearHeads, batches: FeatureBatches, device: torch.device) -> list[float]:
    """Top-1 accuracy (%) of every head over the test batches."""
    heads.eval()
    correct = torch.zeros(len(heads.heads), device=device)
    seen = 0
    with torch.no_grad():
        for features, labels in batches:
            logits = heads(features.to(device, non_blocking=True).float())
            correct += (logits.argmax(-1) == labels.to(device)[None]).sum(1)
            seen += len(labels)
    return (100.0 * correct / seen).tolist()
