"""The network of an experiment: its backbone behind the input normalisation, inside its method's heads.

Apart from the trainer so that evaluation, which rebuilds a checkpoint's network, does not import the training loop.
"""

from __future__ import annotations

import torch
from torch import nn

from genview.data.images import NORMALIZATION
from genview.methods import build_method
from genview.training.backbones import build_backbone


class Normalize(nn.Module):
    """Normalisation inside the model: the data pipeline yields [0, 1] images, which the quality encoder needs."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        return (images - self.mean) / self.std


def build_model(experiment: dict) -> nn.Module:
    backbone, feature_dim = build_backbone(experiment["backbone"])
    mean, std = NORMALIZATION[experiment["recipe"]["normalization"]]
    return build_method(
        experiment["method"], nn.Sequential(Normalize(mean, std), backbone), feature_dim, experiment["method_args"]
    )
