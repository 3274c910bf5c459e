"""What each pre-training method is, as plain data, for the checks that run before any job.

The Snakefile and ``genview config check`` validate experiments at parse time (the method name, its options, the
loss coefficients its kind can compute), and importing the methods would import torch in every Snakemake job. The
classes in genview/methods carry the same attributes for the training loop; tests/test_fidelity.py checks that every
registered class equals its entry here, so a change made on one side only fails there.
"""

from __future__ import annotations

from dataclasses import dataclass

from genview.errors import ConfigError

#: The attributes of a method class this catalog states.
ATTRIBUTES = (
    "kind",
    "default_options",
    "has_image_image_head",
    "uses_momentum",
    "default_augmentation",
    "supports_multi_crop",
    "decay_norm_and_bias",
)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: str  # "two_view", "vision_language" or "supervised"
    default_options: dict
    has_image_image_head: bool = False
    uses_momentum: bool = False
    default_augmentation: str = "simclr"
    supports_multi_crop: bool = False
    decay_norm_and_bias: bool = False


_TEXT_TOWER = {"embed_dim": 512, "text_width": 512, "text_heads": 8, "text_layers": 12, "context_length": 77,
               "text_quick_gelu": True}  # fmt: skip

#: Method name -> what it is.
METHOD_CATALOG = {
    info.name: info
    for info in (
        MethodInfo("byol", "two_view",
                   {"proj_hidden_dim": 4096, "proj_dim": 256, "pred_hidden_dim": 4096, "base_momentum": 0.996},
                   uses_momentum=True, default_augmentation="byol", supports_multi_crop=True),
        MethodInfo("clip", "vision_language", _TEXT_TOWER, default_augmentation="genviewpp"),
        MethodInfo("mocov2", "two_view",
                   {"temperature": 0.2, "queue_size": 65536, "proj_hidden_dim": 2048, "proj_dim": 128,
                    "base_momentum": 0.999},
                   uses_momentum=True, default_augmentation="mocov2", decay_norm_and_bias=True),
        MethodInfo("mocov3", "two_view",
                   {"temperature": 0.2, "proj_hidden_dim": 4096, "proj_dim": 256, "proj_layers": 2,
                    "pred_hidden_dim": 4096, "pred_last_batch_norm": False, "base_momentum": 0.99},
                   uses_momentum=True, default_augmentation="byol", supports_multi_crop=True),
        MethodInfo("simclr", "two_view",
                   {"temperature": 0.1, "proj_hidden_dim": 2048, "proj_dim": 128, "proj_layers": 2},
                   supports_multi_crop=True),
        MethodInfo("simsiam", "two_view",
                   {"proj_hidden_dim": 2048, "proj_dim": 2048, "proj_layers": 3, "pred_hidden_dim": 512},
                   default_augmentation="mocov2", supports_multi_crop=True, decay_norm_and_bias=True),
        MethodInfo("slip", "vision_language",
                   {**_TEXT_TOWER, "ssl_mlp_dim": 4096, "ssl_emb_dim": 256, "ssl_temperature": 0.1},
                   has_image_image_head=True, default_augmentation="genviewpp"),
        MethodInfo("supervised", "supervised", {"num_classes": None}, default_augmentation="plain"),
        MethodInfo("swav", "two_view",
                   {"temperature": 0.1, "num_prototypes": 3000, "proj_hidden_dim": 2048, "proj_dim": 128,
                    "sinkhorn_epsilon": 0.05, "sinkhorn_iterations": 3, "queue_size": 0, "queue_start_iters": 0,
                    "freeze_prototypes_iters": 5005},
                   supports_multi_crop=True, decay_norm_and_bias=True),
    )
}  # fmt: skip


def method_info(name: str, where: str = "method") -> MethodInfo:
    if name not in METHOD_CATALOG:
        raise ConfigError(f"{where}: unknown method {name!r} (known: {', '.join(METHOD_CATALOG)})")
    return METHOD_CATALOG[name]
