"""MoCo v2 (Chen et al., 2020): queries against their momentum key and a queue of past keys."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from genview.methods import TwoViewMethod, register
from genview.methods.heads import ema_update, frozen_copy, mlp_head
from genview.methods.losses import info_nce_per_sample
from genview.runtime.distributed import gather_no_grad, rank, world_size


@register("mocov2")
class MoCoV2(TwoViewMethod):
    """Projector 2048-2048-128 without BN (Linear-ReLU-Linear), temperature 0.2, a queue of 65536 keys, constant
    momentum 0.999.

    Per-sample loss: the reference's single direction, not symmetrised: InfoNCE of the query from view 1 against
    its momentum key from view 2 (positive) and the queue (negatives). After the loss, the keys of the whole global
    batch are enqueued (``queue`` and ``queue_ptr`` are buffers, so checkpoints keep them).
    """

    uses_momentum = True
    ema_schedule = "constant"  # MoCo v2 keeps m = 0.999 throughout
    supports_multi_crop = False  # each pair_loss call enqueues its keys: local-crop keys would fill the queue
    default_augmentation = "mocov2"
    decay_norm_and_bias = True  # mmpretrain's mocov2 config sets no exclusion
    # Per-GPU BN: the key encoder's shuffle across GPUs only hides the positive from per-GPU batch statistics.
    sync_batch_norm = False
    default_options = {
        "temperature": 0.2,
        "queue_size": 65536,
        "proj_hidden_dim": 2048,
        "proj_dim": 128,
        "base_momentum": 0.999,
    }

    def __init__(self, backbone, feature_dim, **options):
        super().__init__(backbone, feature_dim, **options)
        self.temperature = options["temperature"]
        self.projector = mlp_head(feature_dim, options["proj_hidden_dim"], options["proj_dim"], batch_norm=False)
        self.momentum_encoder = frozen_copy(self.backbone, self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(options["queue_size"], options["proj_dim"]), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def pair_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        q = self.projector(self.backbone(view1))
        keys = self._keys(view2)
        # The enqueue below overwrites the buffer in place; the loss keeps its own copy of the negatives it used.
        loss = info_nce_per_sample(q, keys, self.queue.clone(), self.temperature)
        self._enqueue(gather_no_grad(keys))
        return loss

    @torch.no_grad()
    def _keys(self, view: torch.Tensor) -> torch.Tensor:
        """Normalised momentum keys with the reference's shuffle BN: across processes, each one encodes a random
        share of the global batch, so that per-process BN statistics cannot give away which key is the positive.
        """
        if world_size() == 1:
            return F.normalize(self.momentum_encoder(view), dim=1)
        local = slice(rank() * len(view), (rank() + 1) * len(view))
        order = torch.randperm(len(view) * world_size(), device=view.device)
        dist.broadcast(order, src=0)
        shuffled_keys = gather_no_grad(self.momentum_encoder(gather_no_grad(view)[order[local]]))
        keys = torch.empty_like(shuffled_keys)
        keys[order] = shuffled_keys
        return F.normalize(keys[local], dim=1)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys at the pointer, wrapping around the end; a batch larger than the queue keeps its newest."""
        queue_size = len(self.queue)
        keys = keys[-queue_size:]
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % queue_size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % queue_size)

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        ema_update(self.momentum_encoder, [self.backbone, self.projector], momentum)
