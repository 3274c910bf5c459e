"""Pre-training methods: a registry from name to class. Each method is one module of this package that decorates
its class with ``@register("name")``; adding a method is adding one file.

Two kinds share the training loop:
- :class:`TwoViewMethod` (SimCLR, MoCo v2/v3, BYOL, SimSiam, SwAV): ``pair_loss(view1, view2)`` returns the
  per-sample loss (N,), both directions already summed where the method is symmetric, so GenView's per-sample
  quality weights multiply it: ``loss = (weights * per_sample).mean()``. ``forward(view1, view2, local_views)``
  adds multi-crop on top (see :meth:`TwoViewMethod.forward`).
- :class:`VisionLanguageMethod` (CLIP, SLIP): ``forward(views, tokens, ...)`` takes the pairwise quality weights and
  the loss coefficients c0..c3 and returns a dict of named terms with the total under ``"loss"``.

A third kind, ``"supervised"`` (genview.methods.supervised), is the labelled reference of a learning table:
``forward(images, labels)`` returns the per-sample cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn

from genview.errors import ConfigError
from genview.registry import Registry

#: Method name -> class; genview.method_catalog states the same attributes as plain data, for parse-time checks.
METHODS = Registry("method", package=__name__, name_attribute="name")
register = METHODS.register


def method_class(name: str) -> type:
    return METHODS[name]


def build_method(name: str, backbone: nn.Module, feature_dim: int, options: dict | None = None) -> nn.Module:
    """Instantiate a registered method; ``options`` override its ``default_options`` and unknown ones are errors."""
    cls = method_class(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(cls.default_options))
    if unknown:
        raise ConfigError(
            f"method {name!r}: unknown option(s) {unknown} (allowed: {', '.join(sorted(cls.default_options))})"
        )
    return cls(backbone, feature_dim, **{**cls.default_options, **options})


class Method(nn.Module):
    """What the training loop needs of every method; subclass :class:`TwoViewMethod` or
    :class:`VisionLanguageMethod`."""

    kind = "method"
    name = "method"
    default_options: dict = {}
    #: True for methods with a momentum (EMA) encoder; the trainer then calls momentum_update after each step.
    uses_momentum = False
    #: How the trainer moves the EMA momentum from ``base_momentum``: "cosine" (to 1) or "constant".
    ema_schedule = "cosine"
    #: The handcrafted augmentation recipe the method was published with (genview.training.augment.AUGMENTATIONS).
    default_augmentation = "simclr"
    #: Names of submodules whose learning rate stays at the base value instead of following the schedule.
    fixed_lr_modules: tuple[str, ...] = ()
    #: Whether the official recipe decays (and LARS adapts) biases and normalisation parameters too; a recipe's
    #: ``decay_norm_and_bias`` overrides it. mmpretrain's SimCLR, BYOL and MoCo v3 R50 configs exclude them, GenView++
    #: excludes them; MoCo v2, SimSiam and SwAV set no exclusion.
    decay_norm_and_bias = False
    #: Whether multi-GPU training synchronises BatchNorm statistics across GPUs (SyncBatchNorm), as the official
    #: recipes do; MoCo v2 keeps per-GPU BatchNorm, which its shuffled BN needs.
    sync_batch_norm = True

    def __init__(self, backbone: nn.Module, feature_dim: int, **options):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.options = options

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """Move the momentum encoder towards the online one: p_m <- momentum * p_m + (1 - momentum) * p."""

    def before_optimizer_step(self, step: int) -> None:
        """Called between backward and the optimiser step (e.g. to hold some parameters fixed early on)."""


class TwoViewMethod(Method):
    kind = "two_view"
    #: Whether ``forward`` may receive local crops. A method whose pair loss has side effects (MoCo v2's key queue)
    #: must not see the generic multi-crop rule; the experiment resolver rejects multi_crop for it.
    supports_multi_crop = True

    def pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Per-sample loss (N,) of N view pairs."""
        raise NotImplementedError

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, local_views=()) -> torch.Tensor:
        """Per-sample loss (N,) of two global views and any number of local crops (multi-crop).

        The generic rule, for methods without a multi-crop loss of their own (SwAV has one): every local crop is
        paired with each global view, and the mean over all pairs is taken, the global pair counting once and each
        local crop's two pairs counting once together:
        ``(pair(g1, g2) + sum_k (pair(l_k, g1) + pair(l_k, g2)) / 2) / (1 + K)``.
        """
        loss = self.pair_loss(view1, view2)
        for crops in local_views:
            loss = loss + 0.5 * (self.pair_loss(crops, view1) + self.pair_loss(crops, view2))
        return loss / (1 + len(local_views))


class VisionLanguageMethod(Method):
    kind = "vision_language"

    def forward(
        self,
        views: torch.Tensor,
        tokens: torch.Tensor,
        *,
        coefficients: tuple[float, float, float, float],
        image_weights: torch.Tensor | None = None,
        text_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named loss terms of V views (V, B, 3, H, W) of B captions (B, L tokens), the total under "loss"."""
        raise NotImplementedError
