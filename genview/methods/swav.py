"""SwAV (Caron et al., 2020): swapped prediction of Sinkhorn-Knopp cluster assignments over learnable prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genview.methods import TwoViewMethod, register
from genview.methods.heads import mlp_head
from genview.methods.losses import sinkhorn, swav_per_sample
from genview.runtime.distributed import gather_no_grad, rank


@register("swav")
class SwAV(TwoViewMethod):
    """Projector 2048-2048-128 (hidden BN), L2-normalised embeddings, 3000 unit-norm prototypes, temperature 0.1,
    Sinkhorn-Knopp with epsilon 0.05 and 3 iterations over the global batch.

    Per-sample loss (multi-crop, the reference's): codes are computed for the two global views only; each global
    view's codes are predicted from the scores of every other crop (the other global view and all local crops), the
    predictions averaged per global view, then over the two. Without local crops this is the mean of the two swapped
    predictions. With ``queue_size`` > 0, a queue of past global-batch embeddings per view
    starts filling after ``queue_start_iters`` steps and joins the Sinkhorn batch once it is full, as in the
    reference (mmpretrain's ImageNet recipe: 3840 embeddings from epoch 15, i.e. 75075 steps at batch 256). The
    prototypes stay fixed for the first ``freeze_prototypes_iters`` steps (5005: one ImageNet epoch at batch 256).
    """

    decay_norm_and_bias = True  # mmpretrain's swav config: every parameter decayed and LARS-adapted
    default_options = {
        "temperature": 0.1,
        "num_prototypes": 3000,
        "proj_hidden_dim": 2048,
        "proj_dim": 128,
        "sinkhorn_epsilon": 0.05,
        "sinkhorn_iterations": 3,
        "queue_size": 0,
        "queue_start_iters": 0,
        "freeze_prototypes_iters": 5005,
    }

    def __init__(self, backbone, feature_dim, **options):
        super().__init__(backbone, feature_dim, **options)
        self.temperature = options["temperature"]
        self.sinkhorn_epsilon = options["sinkhorn_epsilon"]
        self.sinkhorn_iterations = options["sinkhorn_iterations"]
        self.queue_size = options["queue_size"]
        self.projector = mlp_head(feature_dim, options["proj_hidden_dim"], options["proj_dim"])
        self.prototypes = nn.Linear(options["proj_dim"], options["num_prototypes"], bias=False)
        # Per view, the newest embedding first; queue_count says how many slots hold real embeddings.
        self.register_buffer("queue", torch.zeros(2, self.queue_size, options["proj_dim"]))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.long))
        # Optimiser steps taken (a buffer, so a resumed run knows when the queue starts).
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def before_optimizer_step(self, step: int) -> None:
        if step < self.options["freeze_prototypes_iters"]:
            self.prototypes.weight.grad = None
        self.steps_done.fill_(step + 1)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, local_views=()) -> torch.Tensor:
        with torch.no_grad():
            # The reference re-normalises the prototypes before every step, after the optimiser moved them.
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        # As the reference: one backbone pass per resolution (both global views together, then all local crops),
        # then the projector once over every crop's features, so its BatchNorm sees all crops in one batch.
        features = [self.backbone(torch.cat([view1, view2]))]
        if len(local_views):
            features.append(self.backbone(torch.cat(list(local_views))))
        z1, z2, *local_z = F.normalize(self.projector(torch.cat(features)), dim=1).split(len(view1))
        scores = [self.prototypes(z) for z in (z1, z2, *local_z)]
        codes = [self._codes(scores[0], self.queue[0]), self._codes(scores[1], self.queue[1])]
        self._enqueue(torch.stack([gather_no_grad(z1.detach()), gather_no_grad(z2.detach())]))
        return swav_per_sample(scores, codes, self.temperature)

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor, queued_embeddings: torch.Tensor) -> torch.Tensor:
        """Sinkhorn codes of this process's samples, the equal partition taken over the global batch (plus the queue
        once it is full)."""
        all_scores = gather_no_grad(scores.detach())
        if self.queue_size > 0 and bool(self.queue_count >= self.queue_size):
            all_scores = torch.cat([all_scores, queued_embeddings @ self.prototypes.weight.T])
        codes = sinkhorn(all_scores, self.sinkhorn_epsilon, self.sinkhorn_iterations)
        first_row = rank() * len(scores)
        return codes[first_row : first_row + len(scores)]

    @torch.no_grad()
    def _enqueue(self, embeddings: torch.Tensor) -> None:
        """Push (2, B, D) embeddings in front of the queue; the oldest ones fall off its end."""
        if self.queue_size == 0 or int(self.steps_done) < self.options["queue_start_iters"]:
            return
        self.queue.copy_(torch.cat([embeddings.to(self.queue.dtype), self.queue], dim=1)[:, : self.queue_size])
        self.queue_count.copy_((self.queue_count + embeddings.shape[1]).clamp(max=self.queue_size))
