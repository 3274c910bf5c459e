"""SimSiam (Chen & He, 2021): symmetric negative cosine with a stop-gradient on the projections."""

from __future__ import annotations

import torch

from genview.methods import TwoViewMethod, register
from genview.methods.heads import mlp_head
from genview.methods.losses import negative_cosine_per_sample


@register("simsiam")
class SimSiam(TwoViewMethod):
    """Projector 3 layers 2048-2048-2048 with a scale-free output BN; predictor 2048-512-2048 (the reference recipe).

    Per-sample loss: 0.5 * (-cos(p1, sg(z2)) - cos(p2, sg(z1))), the reference's symmetrised loss per sample. The
    recipe keeps the predictor's learning rate fixed; the trainer finds it as ``self.predictor``.
    """

    default_augmentation = "mocov2"
    fixed_lr_modules = ("predictor",)
    decay_norm_and_bias = True  # mmpretrain's simsiam config sets no exclusion

    default_options = {
        "proj_hidden_dim": 2048,
        "proj_dim": 2048,
        "proj_layers": 3,
        "pred_hidden_dim": 512,
    }

    def __init__(self, backbone, feature_dim, **options):
        super().__init__(backbone, feature_dim, **options)
        self.projector = mlp_head(
            feature_dim,
            options["proj_hidden_dim"],
            options["proj_dim"],
            options["proj_layers"],
            last_batch_norm=True,
            last_batch_norm_affine=False,
        )
        self.predictor = mlp_head(options["proj_dim"], options["pred_hidden_dim"], options["proj_dim"])

    def pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        z1 = self.projector(self.backbone(view1))
        z2 = self.projector(self.backbone(view2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return 0.5 * (negative_cosine_per_sample(p1, z2) + negative_cosine_per_sample(p2, z1))
