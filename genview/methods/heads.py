"""Network pieces the two-view methods share: MLP projectors/predictors and frozen momentum (EMA) copies."""

from __future__ import annotations

import copy

import torch
from torch import nn


def mlp_head(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    *,
    batch_norm: bool = True,
    last_batch_norm: bool = False,
    last_batch_norm_affine: bool = True,
    bias: bool = True,
) -> nn.Sequential:
    """``num_layers`` linear layers; each hidden one is followed by (BN,) ReLU, the last optionally by BN.

    A linear layer has a bias only when no BN follows it (BN's shift makes the bias redundant), as in the
    SimSiam reference heads; ``bias=False`` drops every bias (MoCo v3's heads). ``last_batch_norm_affine=False``
    is the scale-free output BN of SimSiam and MoCo v3.
    """
    if num_layers < 1:
        raise ValueError(f"an MLP head needs at least one layer, got {num_layers}")
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    for index, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        is_last = index == num_layers - 1
        norm_follows = last_batch_norm if is_last else batch_norm
        layers.append(nn.Linear(fan_in, fan_out, bias=bias and not norm_follows))
        if norm_follows:
            layers.append(nn.BatchNorm1d(fan_out, affine=last_batch_norm_affine if is_last else True))
        if not is_last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def frozen_copy(*modules: nn.Module) -> nn.Sequential:
    """A deep copy of ``modules`` chained in order, excluded from the optimiser: the momentum (target) encoder."""
    momentum_encoder = copy.deepcopy(nn.Sequential(*modules))
    momentum_encoder.requires_grad_(False)
    return momentum_encoder


@torch.no_grad()
def ema_update(momentum_encoder: nn.Module, online_modules: list[nn.Module], momentum: float) -> None:
    """p_m <- momentum * p_m + (1 - momentum) * p over the parameters of ``online_modules`` in order.

    Only parameters move: the momentum encoder's BN layers keep their own running statistics, as in the reference
    MoCo and BYOL code (they are trained in train mode, where those statistics are not used).
    """
    online_parameters = [p for module in online_modules for p in module.parameters()]
    momentum_parameters = list(momentum_encoder.parameters())
    if len(online_parameters) != len(momentum_parameters):
        raise RuntimeError("momentum encoder and online encoder have different parameter lists")
    for momentum_parameter, online_parameter in zip(momentum_parameters, online_parameters):
        momentum_parameter.lerp_(online_parameter, 1.0 - momentum)
