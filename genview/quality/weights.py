"""Quality weights of positive pairs, as pure tensor functions (docs/method.md §3; official
``make_foreground_softmask`` / ``aggregate_feature``, GenView's ``calculate_weight``, GenView++'s
``compute_pairwise_weights``).

A frozen encoder's spatial tokens are split softly into foreground and background by their projection on
PC-1; a pair of views scores high when its foregrounds agree and its backgrounds differ (image-image), or when
a view matches its caption and its background differs from the real image's (image-text).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# The official constant, in both the min-max scaling and the normalisation of the masks.
MASK_EPS = 1e-7


def soft_masks(projections: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground and background soft masks (B, T), each summing to 1 per image, from ``tokens @ v`` (B, T).

    The foreground mask is the min-max scaled projection (the image's lowest token 0, its highest 1), the
    background mask its complement. An image whose tokens all project alike gets an all-zero foreground and a
    uniform background, as in the official code.
    """
    low = projections.amin(-1, keepdim=True)
    high = projections.amax(-1, keepdim=True)
    foreground = (projections - low) / (high - low + MASK_EPS)
    background = 1 - foreground
    return (
        foreground / (foreground.sum(-1, keepdim=True) + MASK_EPS),
        background / (background.sum(-1, keepdim=True) + MASK_EPS),
    )


def pooled_features(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Σ_t mask[b, t] · tokens[b, t]``: (B, T, D) and (B, T) -> (B, D)."""
    return (mask.unsqueeze(1) @ tokens).squeeze(1)


def _cosine_matrix(rows: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(rows, dim=-1)
    return unit @ unit.T


def pair_quality(fg1: torch.Tensor, bg1: torch.Tensor, fg2: torch.Tensor, bg2: torch.Tensor) -> torch.Tensor:
    """``q = cos(fg1, fg2) − cos(bg1, bg2)`` per pair (N,), from pooled features (N, D) of the two views."""
    return F.cosine_similarity(fg1, fg2, dim=-1) - F.cosine_similarity(bg1, bg2, dim=-1)


def genview_weights(
    fg1: torch.Tensor, bg1: torch.Tensor, fg2: torch.Tensor, bg2: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """GenView's per-sample weights (N,) of N view pairs: ``N · softmax_batch(γ q)``, mean 1, q from
    :func:`pair_quality`."""
    quality = pair_quality(fg1, bg1, fg2, bg2)
    return grouped_weights(quality, len(quality), gamma)


def grouped_weights(quality: torch.Tensor, group_size: int, gamma: float = 1.0) -> torch.Tensor:
    """GenView's weights (N,) from pair qualities q (N,), the softmax taken within each run of ``group_size``
    consecutive pairs: ``G · softmax_group(γ q)``, mean 1 per group. The official softmax runs over each GPU's
    batch; a fixed G keeps that group whatever the number of GPUs. N must be a multiple of G."""
    if len(quality) % group_size:
        raise ValueError(f"{len(quality)} pairs do not split into groups of {group_size}")
    groups = quality.reshape(-1, group_size)
    return (group_size * torch.softmax(gamma * groups, dim=1)).flatten()


def image_image_weights(fg: torch.Tensor, bg: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """GenView++'s image-image weights (M, M) of M views; ``labels`` (M,) says whose caption each view is.

    ``W_ij = exp(γ (cos(fg_i, fg_j) − cos(bg_i, bg_j)))`` for views i ≠ j of the same caption, else 0,
    divided by its mean over those positive pairs. Needs at least one positive pair (two views of a caption);
    without one the mean is 0/0.
    """
    positive = labels[:, None] == labels[None, :]
    positive.fill_diagonal_(False)
    weights = torch.exp(gamma * (_cosine_matrix(fg) - _cosine_matrix(bg))) * positive
    # A sum over a count, not weights[positive].mean(): boolean indexing would wait for the GPU every step.
    return weights / (weights.sum() / positive.sum())


def image_text_weights(
    img_emb: torch.Tensor,
    txt_emb: torch.Tensor,
    bg_views: torch.Tensor,
    bg_real: torch.Tensor,
    labels: torch.Tensor,
    gamma: float = 2.0,
) -> torch.Tensor:
    """GenView++'s image-text weights (M, B) of M views against B captions; ``labels`` (M,) in [0, B).

    Only the view's own caption k = labels[i] gets a weight,
    ``exp(γ (cos(img_emb_i, txt_emb_k) − cos(bg_views_i, bg_real_k)))``, divided by its mean over the M
    views; every other entry is 0. ``bg_real`` (B, D) is the background feature of each caption's real image.
    """
    alignment = F.cosine_similarity(img_emb, txt_emb[labels], dim=-1)
    background_similarity = F.cosine_similarity(bg_views, bg_real[labels], dim=-1)
    own = torch.exp(gamma * (alignment - background_similarity))
    weights = own.new_zeros(len(labels), len(txt_emb))
    return weights.scatter_(1, labels[:, None], (own / own.mean())[:, None])


def loss_coefficients(
    epoch: int, early: Sequence[float], later: Sequence[float], epoch_switch: int
) -> tuple[float, ...]:
    """Loss coefficients c0..c3 of ``epoch`` (0-based): ``early`` before ``epoch_switch``, else ``later``."""
    return tuple(float(c) for c in (later if epoch >= epoch_switch else early))
