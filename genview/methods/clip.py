"""CLIP with V views per caption (GenView++'s multi-positive image-text loss), optionally quality-weighted.

Loss = c0*L_ii + c1*L_ii^QD + c2*L_it + c3*L_it^QD. CLIP has no image-image head, so only c2 and c3 may be
nonzero (the CLIP baseline is 0 0 1 0); SLIP (:mod:`genview.methods.slip`) adds those terms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from genview.methods import VisionLanguageMethod, register
from genview.methods.text import build_text_tower
from genview.methods.vl_losses import image_text_loss

LOGIT_SCALE_INIT = math.log(1 / 0.07)
#: The similarity multiplier exp(logit_scale) is kept within [1, 100], as in CLIP and the official code.
LOGIT_SCALE_MAX = math.log(100)


@register("clip")
class CLIP(VisionLanguageMethod):
    """Image tower = backbone + linear projection to ``embed_dim``; text tower = causal CLIP text transformer.

    ``context_length`` is the caption length in tokens: ``tokenize(captions, method.context_length)``.
    """

    default_options = {
        "embed_dim": 512,
        "text_width": 512,
        "text_heads": 8,
        "text_layers": 12,
        "context_length": 77,
        "text_quick_gelu": True,
    }
    #: Whether c0 and c1 (the image-image terms) may be nonzero.
    has_image_image_head = False
    #: GenView++'s views: MoCo v2-strength colour jitter and DownSampleAndUpsample (genview.training.augment).
    default_augmentation = "genviewpp"

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        *,
        embed_dim: int,
        text_width: int,
        text_heads: int,
        text_layers: int,
        context_length: int,
        text_quick_gelu: bool,
        **subclass_options,
    ):
        # subclass_options carries a subclass's options into self.options; build_method rejects unknown ones.
        super().__init__(
            backbone,
            feature_dim,
            embed_dim=embed_dim,
            text_width=text_width,
            text_heads=text_heads,
            text_layers=text_layers,
            context_length=context_length,
            text_quick_gelu=text_quick_gelu,
            **subclass_options,
        )
        self.context_length = context_length
        self.image_projection = nn.Linear(feature_dim, embed_dim, bias=False)
        # The official (SLIP/StableRep) initialisation: N(0, width^-1/2), width = the image tower's feature size.
        nn.init.normal_(self.image_projection.weight, std=feature_dim**-0.5)
        self.text_tower = build_text_tower(
            text_width, text_heads, text_layers, context_length, embed_dim, quick_gelu=text_quick_gelu
        )
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """Clamp the parameter in place to [0, ln 100].

        ``forward`` calls it first: the official clamp after each optimiser step, moved to the start of the
        next step. The gradient keeps flowing at the bound (unlike a clamp inside the graph) and the trainer
        needs no extra call; calling it once more after the last step saves a clamped value.
        """
        self.logit_scale.clamp_(0, LOGIT_SCALE_MAX)

    def forward(
        self,
        views: torch.Tensor,
        tokens: torch.Tensor,
        *,
        coefficients: Sequence[float],
        image_weights: torch.Tensor | None = None,
        text_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted sum of the loss terms and the terms themselves.

        views (V, B, 3, H, W); tokens (B, context_length); coefficients c0..c3; image_weights (V*B, V*B) and
        text_weights (V*B, B): local quality weights, view-major rows. Returns ``loss`` and the terms ``ii``,
        ``ii_qd``, ``it``, ``it_qd``; a term whose coefficient is 0 is not computed and reads 0.
        """
        c_ii, c_ii_qd, c_it, c_it_qd = self._check_request(views, tokens, coefficients, image_weights, text_weights)
        self.clamp_logit_scale()
        n_views, batch_size = views.shape[:2]
        features = self.backbone(views.flatten(0, 1))  # (V*B, feature_dim), view-major
        zero = features.new_zeros(())
        terms = {"ii": zero, "ii_qd": zero, "it": zero, "it_qd": zero}
        if c_ii or c_ii_qd:
            terms.update(self.image_image_terms(features, n_views, batch_size, c_ii != 0, c_ii_qd != 0, image_weights))
        if c_it or c_it_qd:
            image_embeddings = self.image_projection(features)
            text_embeddings = self.text_tower(tokens)
            scale = self.logit_scale.exp()
            if c_it:
                terms["it"] = image_text_loss(image_embeddings, text_embeddings, scale)
            if c_it_qd:
                terms["it_qd"] = image_text_loss(image_embeddings, text_embeddings, scale, text_weights)
        terms["loss"] = c_ii * terms["ii"] + c_ii_qd * terms["ii_qd"] + c_it * terms["it"] + c_it_qd * terms["it_qd"]
        return terms

    def image_image_terms(
        self,
        features: torch.Tensor,
        n_views: int,
        batch_size: int,
        plain: bool,
        quality_driven: bool,
        image_weights: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The requested ones of ``ii`` and ``ii_qd``; methods with ``has_image_image_head`` implement it."""
        raise NotImplementedError(f"{self.name} has no image-image head")

    def _check_request(
        self,
        views: torch.Tensor,
        tokens: torch.Tensor,
        coefficients: Sequence[float],
        image_weights: torch.Tensor | None,
        text_weights: torch.Tensor | None,
    ) -> tuple[float, float, float, float]:
        # Checked before the backbone runs: a wrong coefficient switch should fail at once.
        if len(coefficients) != 4:
            raise ValueError(f"expected 4 loss coefficients c0 c1 c2 c3, got {list(coefficients)}")
        c_ii, c_ii_qd, c_it, c_it_qd = (float(c) for c in coefficients)
        if not any((c_ii, c_ii_qd, c_it, c_it_qd)):
            raise ValueError("all four loss coefficients are 0: there is nothing to train")
        if views.ndim != 5 or tokens.ndim != 2 or tokens.shape[0] != views.shape[1]:
            raise ValueError(
                f"expected views (V, B, 3, H, W) and tokens (B, L), got {tuple(views.shape)} and {tuple(tokens.shape)}"
            )
        if c_ii or c_ii_qd:
            if not self.has_image_image_head:
                raise ValueError(
                    f"method {self.name!r} has no image-image head, so c0 and c1 must be 0 "
                    f"(got {c_ii:g}, {c_ii_qd:g}); use 'slip' for the image-image terms"
                )
            if views.shape[0] < 2:
                raise ValueError("the image-image terms (c0, c1) need at least 2 views per caption")
        if c_ii_qd and image_weights is None:
            raise ValueError(f"c1 = {c_ii_qd:g} (quality-driven image-image term) needs image_weights")
        if c_it_qd and text_weights is None:
            raise ValueError(f"c3 = {c_it_qd:g} (quality-driven image-text term) needs text_weights")
        return c_ii, c_ii_qd, c_it, c_it_qd
