"""BYOL (Grill et al., 2020): an online network predicts a momentum target network's projection of the other view."""

from __future__ import annotations

import torch

from genview.methods import TwoViewMethod, register
from genview.methods.heads import ema_update, frozen_copy, mlp_head
from genview.methods.losses import normalized_mse_per_sample


@register("byol")
class BYOL(TwoViewMethod):
    """Projector and predictor 4096-256 (hidden BN, no output BN, no bias); target = momentum copy of backbone +
    projector.

    Per-sample loss: (2 - 2 cos(p1, sg(t2))) + (2 - 2 cos(p2, sg(t1))), the paper's symmetrised loss per sample.
    ``base_momentum`` 0.996 is the start of the cosine schedule to 1 that the trainer applies.
    """

    uses_momentum = True
    default_augmentation = "byol"
    default_options = {
        "proj_hidden_dim": 4096,
        "proj_dim": 256,
        "pred_hidden_dim": 4096,
        "base_momentum": 0.996,
    }

    def __init__(self, backbone, feature_dim, **options):
        super().__init__(backbone, feature_dim, **options)
        # No bias in the last layers, as mmpretrain's BYOL neck and predictor (NonLinearNeck, with_last_bias off);
        # the hidden layers have none either way (BN follows them).
        self.projector = mlp_head(feature_dim, options["proj_hidden_dim"], options["proj_dim"], bias=False)
        self.predictor = mlp_head(options["proj_dim"], options["pred_hidden_dim"], options["proj_dim"], bias=False)
        self.momentum_encoder = frozen_copy(self.backbone, self.projector)

    def pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        p1 = self.predictor(self.projector(self.backbone(view1)))
        p2 = self.predictor(self.projector(self.backbone(view2)))
        with torch.no_grad():
            t1, t2 = self.momentum_encoder(view1), self.momentum_encoder(view2)
        return normalized_mse_per_sample(p1, t2) + normalized_mse_per_sample(p2, t1)

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        ema_update(self.momentum_encoder, [self.backbone, self.projector], momentum)
