"""MoCo v3 (Chen, Xie & He, 2021): queries against the momentum keys of the global batch, both directions."""

from __future__ import annotations

import torch

from genview.methods import TwoViewMethod, register
from genview.methods.heads import ema_update, frozen_copy, mlp_head
from genview.methods.losses import moco_v3_per_sample
from genview.runtime.distributed import gather_no_grad, rank


@register("mocov3")
class MoCoV3(TwoViewMethod):
    """Projector 4096-256 (2 layers for ResNet, 3 for ViT) with a scale-free output BN; predictor 4096-256
    (2 layers; the ViT recipe ends it with a scale-free BN too: ``pred_last_batch_norm``); no linear layer has a
    bias, as in the reference heads; momentum encoder = copy of backbone + projector.

    Per-sample loss: ctr(q1, k2) + ctr(q2, k1), each the cross-entropy of the sample's query against all keys of the
    global batch, times 2 * temperature (the reference's ``loss_weight``). Temperature 0.2 is the ViT recipe; the
    ResNet-50 recipe uses 1.0. ``base_momentum`` 0.99 starts the trainer's cosine schedule to 1.
    """

    uses_momentum = True
    default_augmentation = "byol"  # MoCo v3 uses BYOL's asymmetric blur/solarize views
    default_options = {
        "temperature": 0.2,
        "proj_hidden_dim": 4096,
        "proj_dim": 256,
        "proj_layers": 2,
        "pred_hidden_dim": 4096,
        "pred_last_batch_norm": False,
        "base_momentum": 0.99,
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
            last_batch_norm_affine=False,
            bias=False,
        )
        self.predictor = mlp_head(
            options["proj_dim"],
            options["pred_hidden_dim"],
            options["proj_dim"],
            last_batch_norm=options["pred_last_batch_norm"],
            last_batch_norm_affine=False,
            bias=False,
        )
        self.momentum_encoder = frozen_copy(self.backbone, self.projector)

    def pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        q1 = self.predictor(self.projector(self.backbone(view1)))
        q2 = self.predictor(self.projector(self.backbone(view2)))
        with torch.no_grad():
            k1 = gather_no_grad(self.momentum_encoder(view1))
            k2 = gather_no_grad(self.momentum_encoder(view2))
        offset = rank() * len(q1)
        return moco_v3_per_sample(q1, k2, self.temperature, offset) + moco_v3_per_sample(
            q2, k1, self.temperature, offset
        )

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        ema_update(self.momentum_encoder, [self.backbone, self.projector], momentum)
