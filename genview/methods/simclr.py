"""SimCLR (Chen et al., 2020): NT-Xent over the global batch of both views."""

from __future__ import annotations

import torch

from genview.methods import TwoViewMethod, register
from genview.methods.heads import mlp_head
from genview.methods.losses import nt_xent_per_sample
from genview.runtime.distributed import gather_with_grad, rank


@register("simclr")
class SimCLR(TwoViewMethod):
    """Projector 2048-2048-128 with BN after every layer (mmpretrain's SimCLR neck), temperature 0.1.

    Per-sample loss: the mean of the NT-Xent losses of the sample's two anchors (view 1 and view 2), negatives from
    the whole global batch; its batch mean is the usual loss averaged over all 2N anchors.
    """

    default_options = {
        "temperature": 0.1,
        "proj_hidden_dim": 2048,
        "proj_dim": 128,
        "proj_layers": 2,
    }

    def __init__(self, backbone, feature_dim, **options):
        super().__init__(backbone, feature_dim, **options)
        self.temperature = options["temperature"]
        self.projector = mlp_head(
            feature_dim,
            options["proj_hidden_dim"],
            options["proj_dim"],
            options["proj_layers"],
            last_batch_norm=True,
        )

    def pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        # One pass over both views, as the references do: BN statistics are those of all 2N images (crops of two
        # sizes, multi-crop's local and global ones, need one pass each).
        if view1.shape == view2.shape:
            z1, z2 = self.projector(self.backbone(torch.cat([view1, view2]))).chunk(2)
        else:
            z1, z2 = self.projector(self.backbone(view1)), self.projector(self.backbone(view2))
        return nt_xent_per_sample(
            z1,
            z2,
            self.temperature,
            z1_all=gather_with_grad(z1),
            z2_all=gather_with_grad(z2),
            offset=rank() * len(z1),
        )
