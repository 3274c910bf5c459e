"""Two-view self-supervised losses as pure functions on tensors.

Each loss returns one value per local sample, shape (N,), so that GenView's per-sample quality weights can multiply
it; with unit weights the mean over the batch is the method's usual scalar loss. Embeddings are L2-normalised inside
where the loss is defined on cosine similarities, so callers may pass raw projections.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def full_precision(loss):
    """Run ``loss`` in float32 even inside an autocast region: cosine logits over small temperatures, large
    negative masks and log-softmax overflow or lose precision in float16."""

    def tensors_in(value) -> list:
        if isinstance(value, (list, tuple)):
            return [t for item in value for t in tensors_in(item)]
        return [value] if isinstance(value, torch.Tensor) else []

    def widen(value):
        if isinstance(value, (list, tuple)):  # sequences of tensors (SwAV's crops)
            return type(value)(map(widen, value))
        is_low = isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16)
        return value.float() if is_low else value

    @functools.wraps(loss)
    def wrapper(*args, **kwargs):
        tensors = tensors_in([*args, *kwargs.values()])
        if not tensors:
            return loss(*args, **kwargs)

        with torch.autocast(tensors[0].device.type, enabled=False):
            return loss(*map(widen, args), **{key: widen(value) for key, value in kwargs.items()})

    return wrapper


def _cross_entropy_per_anchor(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    positive_index: torch.Tensor,
    temperature: float,
    excluded_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """-log softmax over candidates of the positive, from cosine logits / temperature; one value per anchor.

    ``excluded_index`` removes one candidate per anchor from the softmax (the anchor itself in NT-Xent).
    """
    logits = F.normalize(anchors, dim=1) @ F.normalize(candidates, dim=1).T / temperature
    if excluded_index is not None:
        logits = logits.scatter(1, excluded_index[:, None], float("-inf"))
    return F.cross_entropy(logits, positive_index, reduction="none")


@full_precision
def nt_xent_per_sample(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    *,
    z1_all: torch.Tensor | None = None,
    z2_all: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """SimCLR's NT-Xent, the two anchors of each sample averaged.

    ``z1``, ``z2`` (N, D) are this process's projections of the two views; ``z1_all``, ``z2_all`` (M, D) those of the
    global batch (default: the local ones), holding this process's rows at ``offset``. The anchor ``z1[i]`` has the
    positive ``z2_all[offset + i]`` and as negatives the other 2M - 2 projections (itself excluded), and symmetrically
    for ``z2[i]``. Averaging the two anchors makes the batch mean the usual mean over all 2M anchors.
    """
    z1_all = z1 if z1_all is None else z1_all
    z2_all = z2 if z2_all is None else z2_all
    global_size = len(z1_all)
    local_index = offset + torch.arange(len(z1), device=z1.device)
    candidates = torch.cat([z1_all, z2_all])
    loss_view1 = _cross_entropy_per_anchor(
        z1, candidates, global_size + local_index, temperature, excluded_index=local_index
    )
    loss_view2 = _cross_entropy_per_anchor(
        z2, candidates, local_index, temperature, excluded_index=global_size + local_index
    )
    return 0.5 * (loss_view1 + loss_view2)


@full_precision
def info_nce_per_sample(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: query ``q[i]`` against its key ``k[i]`` (the positive, logit 0) and the shared ``negatives``.

    ``k`` and ``negatives`` get no gradient (momentum keys and the queue).
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    negatives = F.normalize(negatives.detach(), dim=1)
    positive_logits = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive_logits, q @ negatives.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device), reduction="none")


@full_precision
def moco_v3_per_sample(q: torch.Tensor, k_all: torch.Tensor, temperature: float, offset: int = 0) -> torch.Tensor:
    """One direction of MoCo v3's loss: query ``q[i]`` against every key of the global batch ``k_all``, positive
    ``k_all[offset + i]``; scaled by 2 * temperature as in the reference (it cancels the 1 / temperature in the
    gradient with respect to the similarities)."""
    positive_index = offset + torch.arange(len(q), device=q.device)
    return 2 * temperature * _cross_entropy_per_anchor(q, k_all.detach(), positive_index, temperature)


@full_precision
def negative_cosine_per_sample(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """-cos(p, z) with the target ``z`` detached (the stop-gradient of SimSiam and BYOL)."""
    return -(F.normalize(p, dim=1) * F.normalize(z.detach(), dim=1)).sum(dim=1)


@full_precision
def normalized_mse_per_sample(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's ||p/|p| - z/|z| ||^2 = 2 - 2 cos(p, z), target detached."""
    return 2 + 2 * negative_cosine_per_sample(p, z)


@torch.no_grad()
@full_precision
def sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """SwAV's equal-partition soft assignment of B samples to K prototypes from scores (B, K); rows sum to 1.

    Q = exp(scores / epsilon), then alternately every prototype gets 1/K and every sample 1/B of the mass; the
    result is scaled so that each sample's codes sum to 1. Computed in float32 whatever the input precision.
    """
    scores = scores.float()
    # exp(score / epsilon) overflows half precision (epsilon 0.05: exp(20)); a constant shift cancels in the
    # normalisation that follows.
    codes = torch.exp((scores - scores.max()) / epsilon)
    codes /= codes.sum()
    num_samples, num_prototypes = codes.shape
    for _ in range(iterations):
        codes /= codes.sum(dim=0, keepdim=True) * num_prototypes
        codes /= codes.sum(dim=1, keepdim=True) * num_samples
    return codes * num_samples


@full_precision
def swav_per_sample(
    scores: Sequence[torch.Tensor],
    codes: Sequence[torch.Tensor],
    temperature: float,
) -> torch.Tensor:
    """SwAV's swapped prediction over crops: ``scores[v]`` (N, K) are crop v's prototype scores, ``codes[i]`` the
    Sinkhorn codes of crop i for the first ``len(codes)`` crops (the global views). Each crop i with codes is
    predicted from every other crop v, ``-sum_k codes_i * log softmax(scores_v / temperature)``, averaged over v
    and then over i, as in the reference. Two crops: the mean of the two swapped predictions."""
    per_assignment = []
    for i, code in enumerate(codes):
        predictions = [
            -(code.detach() * F.log_softmax(score / temperature, dim=1)).sum(dim=1)
            for v, score in enumerate(scores)
            if v != i
        ]
        per_assignment.append(torch.stack(predictions).mean(0))
    return torch.stack(per_assignment).mean(0)
