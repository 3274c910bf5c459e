"""Backbones by name: images (N, 3, H, W) -> features (N, D). A registry, like the methods."""

from __future__ import annotations

from typing import Callable

from torch import nn

from genview.errors import ConfigError

BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {}

# Published ViT sizes (timm names); `vit` takes the same keys for any other size (the tiny default uses it).
VIT_PRESETS = {
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6, patch_size=16),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16),
}


def backbone(name: str):
    def decorate(builder):
        BACKBONES[name] = builder
        return builder

    return decorate


def _resnet(arch: str, *, image_size: int = 224, small_stem: bool = False) -> tuple[nn.Module, int]:
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None)
    if small_stem:
        # CIFAR-style stem for small images: a 3x3 stride-1 convolution and no max-pool keep 32 px inputs at 32x32.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim


@backbone("resnet18")
def resnet18(**options):
    return _resnet("resnet18", **options)


@backbone("resnet50")
def resnet50(**options):
    return _resnet("resnet50", **options)


def _vit(*, image_size: int = 224, patch_size: int = 16, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
         mlp_ratio: float = 4.0) -> tuple[nn.Module, int]:
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=image_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        mlp_ratio=mlp_ratio, num_classes=0, global_pool="token",
    )
    return model, embed_dim


@backbone("vit")
def vit(**options):
    return _vit(**options)


for _preset, _dims in VIT_PRESETS.items():
    backbone(_preset)(lambda _dims=_dims, **options: _vit(**{**_dims, **options}))


def build_backbone(spec: dict) -> tuple[nn.Module, int]:
    """``spec`` = {"name": ..., other keys are the builder's options}; returns (module, feature dimension)."""
    options = {key: value for key, value in spec.items() if key != "name"}
    name = spec.get("name")
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(sorted(BACKBONES))})")
    try:
        return BACKBONES[name](**options)
    except TypeError as error:
        raise ConfigError(f"backbone {name!r}: bad option(s) {sorted(options)}: {error}") from None
