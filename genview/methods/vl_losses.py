"""Multi-positive contrastive losses of GenView++ (StableRep-style), with optional pairwise quality weights.

Layout: each of a rank's B captions comes with V image views, stacked view-major, so local image row ``i``
shows caption ``i % B``. The gathered (global) batch is rank-major: caption ``b`` of rank ``r`` has the global
id ``r * B + b``.

Normalisation across ranks: each rank's loss is the mean over its own rows (image rows, and caption rows for
the text direction), with every other rank's rows as extra negatives. ``gather_with_grad`` returns each
rank's gradient to the features' owner and DDP averages parameter gradients over ranks, so W ranks follow the
gradient of the mean of the W rank losses, which is the loss of one process holding the whole batch (given
the same local batch size on every rank).

Quality weights are local (this rank's rows against this rank's columns), since every positive pair lies
within one rank. They are detached: they rescale terms and are not trained through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genview.methods.losses import full_precision
from genview.runtime.distributed import gather_no_grad, gather_with_grad, rank

# Replaces self-similarities so that a view is never its own candidate. Finite (not -inf), so that the zero
# target on the diagonal times its log-probability stays 0 rather than NaN; the losses compute logits in
# float32, where -1e9 is representable (in float16 it would overflow to -inf).
SELF_SIMILARITY_MASK = -1e9


@full_precision
def multi_positive_cross_entropy(
    logits: torch.Tensor, positives_mask: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``-mean_i sum_j p_ij * w_ij * log_softmax(logits)_ij`` with ``p = mask / (positives in row i)``.

    The target of row i spreads evenly over its positives; ``weights`` (same shape as ``logits``, None = all
    ones) rescale individual positive terms. A row without positives adds 0 and still counts in the mean.
    """
    positives_mask = positives_mask.to(logits.dtype)
    target = positives_mask / positives_mask.sum(dim=1, keepdim=True).clamp(min=1)
    if weights is not None:
        target = target * weights.detach().to(logits.dtype)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def caption_labels(n_views: int, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Global caption id of each local view-major image row: ``i % B + B * rank``."""
    return torch.arange(batch_size, device=device).repeat(n_views) + batch_size * rank()


def place_in_rank_columns(local_weights: torch.Tensor, n_global_columns: int) -> torch.Tensor:
    """Embed (rows, C) local weights in a (rows, n_global_columns) matrix at columns ``[rank*C, (rank+1)*C)``.

    The other blocks are 0; they hold no positives, so the target is 0 there anyway.
    """
    n_rows, n_local_columns = local_weights.shape
    padded = local_weights.new_zeros(n_rows, n_global_columns)
    start = rank() * n_local_columns
    padded[:, start : start + n_local_columns] = local_weights
    return padded


@full_precision
def image_image_loss(
    features: torch.Tensor, labels: torch.Tensor, temperature: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """StableRep's multi-positive contrastive loss over image views.

    features: (M, D) local view embeddings (normalised here); labels: (M,) global caption id of each row
    (see :func:`caption_labels`); weights: (M, M) local pairwise weights or None. Each row is contrasted with
    every view of the global batch except itself; its positives are the other views of the same caption.
    """
    features = F.normalize(features.float(), dim=1)
    all_features = gather_with_grad(features)
    all_labels = gather_no_grad(labels)
    logits = features @ all_features.T / temperature
    n_local = features.shape[0]
    own_columns = torch.arange(n_local, device=logits.device) + n_local * rank()
    self_mask = own_columns[:, None] == torch.arange(logits.shape[1], device=logits.device)[None, :]
    logits = logits.masked_fill(self_mask, SELF_SIMILARITY_MASK)
    positives = (labels[:, None] == all_labels[None, :]) & ~self_mask
    if weights is not None:
        _check_shape("image weights", weights, (n_local, n_local))
        weights = place_in_rank_columns(weights, logits.shape[1])
    return multi_positive_cross_entropy(logits, positives, weights)


@full_precision
def image_text_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP loss with V views per caption, averaged over the image->text and text->image directions.

    image_features: (M = V*B, E) local, view-major; text_features: (B, E) local (both normalised here);
    logit_scale: the multiplier ``s`` of the cosine similarities (already exponentiated); weights: (M, B)
    local or None, read at each view's own caption. Image row i has one positive, its caption; caption k has V
    positives, its views. With V = 1 this is the standard symmetric CLIP loss.
    """
    n_images, n_captions = image_features.shape[0], text_features.shape[0]
    if n_images % n_captions:
        raise ValueError(f"{n_images} image rows are not a whole number of views of {n_captions} captions")
    image_features = F.normalize(image_features.float(), dim=1)
    text_features = F.normalize(text_features.float(), dim=1)
    all_image_features = gather_with_grad(image_features)
    all_text_features = gather_with_grad(text_features)

    image_labels = caption_labels(n_images // n_captions, n_captions, device=image_features.device)
    all_image_labels = gather_no_grad(image_labels)
    text_labels = torch.arange(n_captions, device=text_features.device) + n_captions * rank()
    all_text_labels = gather_no_grad(text_labels)

    logits_per_image = logit_scale * image_features @ all_text_features.T
    logits_per_text = logit_scale * text_features @ all_image_features.T
    image_positives = image_labels[:, None] == all_text_labels[None, :]
    text_positives = text_labels[:, None] == all_image_labels[None, :]
    image_weights = text_weights = None
    if weights is not None:
        _check_shape("text weights", weights, (n_images, n_captions))
        image_weights = place_in_rank_columns(weights, logits_per_image.shape[1])
        text_weights = place_in_rank_columns(weights.T, logits_per_text.shape[1])
    image_to_text = multi_positive_cross_entropy(logits_per_image, image_positives, image_weights)
    text_to_image = multi_positive_cross_entropy(logits_per_text, text_positives, text_weights)
    return (image_to_text + text_to_image) / 2


def _check_shape(name: str, tensor: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name} have shape {tuple(tensor.shape)}, expected {expected} (local rows x local columns)")
