"""Supervised reference: the backbone trained with the training split's labels (cross-entropy of a linear head on
its features), one augmented view per image. Not a method of the paper: it is the upper reference of a learning
table, the same backbone and budget as the self-supervised rows, with labels."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from genview.errors import ConfigError
from genview.methods import Method, register


@register("supervised")
class Supervised(Method):
    """``forward(images, labels)`` returns the per-sample cross-entropy (N,); ``labels`` index the training split's
    classes in sorted order (genview.training.data.PretrainDataset, mode "supervised")."""

    kind = "supervised"
    # Crop, flip and grayscale: the usual supervised recipe without the colour distortions of the SSL presets.
    default_augmentation = "plain"
    default_options = {"num_classes": None}

    def __init__(self, backbone, feature_dim, **options):
        super().__init__(backbone, feature_dim, **options)
        if not isinstance(options["num_classes"], int) or options["num_classes"] < 2:
            raise ConfigError(
                f"method 'supervised': method_args.supervised.num_classes must be the training split's number of "
                f"classes (an integer >= 2), got {options['num_classes']!r}"
            )
        self.head = nn.Linear(feature_dim, options["num_classes"])

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return functional.cross_entropy(self.head(self.backbone(images)), labels, reduction="none")
