"""SLIP as in GenView++/StableRep: CLIP plus a multi-positive image-image loss between each caption's views.

Baseline coefficients 1 0 1 0; GenView++ adds the quality-driven terms (1 1 1 1 after the switch).
"""

from __future__ import annotations

import torch
from torch import nn

from genview.methods import register
from genview.methods.clip import CLIP
from genview.methods.vl_losses import caption_labels, image_image_loss


def build_image_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The SSL head: two Linear-BN-ReLU layers and a linear output.

    The official head uses SyncBatchNorm; a distributed trainer converts these with
    ``nn.SyncBatchNorm.convert_sync_batchnorm``.
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


@register("slip")
class SLIP(CLIP):
    default_options = {
        **CLIP.default_options,
        "ssl_mlp_dim": 4096,
        "ssl_emb_dim": 256,
        "ssl_temperature": 0.1,
    }
    has_image_image_head = True

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        *,
        ssl_mlp_dim: int,
        ssl_emb_dim: int,
        ssl_temperature: float,
        **clip_options,
    ):
        super().__init__(
            backbone,
            feature_dim,
            ssl_mlp_dim=ssl_mlp_dim,
            ssl_emb_dim=ssl_emb_dim,
            ssl_temperature=ssl_temperature,
            **clip_options,
        )
        self.ssl_temperature = ssl_temperature
        self.image_mlp = build_image_mlp(feature_dim, ssl_mlp_dim, ssl_emb_dim)

    def image_image_terms(
        self,
        features: torch.Tensor,
        n_views: int,
        batch_size: int,
        plain: bool,
        quality_driven: bool,
        image_weights: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        # One head pass per view, so that BatchNorm statistics are per view (real and generated views differ).
        embeddings = torch.cat([self.image_mlp(view) for view in features.unflatten(0, (n_views, batch_size))])
        labels = caption_labels(n_views, batch_size, device=features.device)
        terms = {}
        if plain:
            terms["ii"] = image_image_loss(embeddings, labels, self.ssl_temperature)
        if quality_driven:
            terms["ii_qd"] = image_image_loss(embeddings, labels, self.ssl_temperature, image_weights)
        return terms
