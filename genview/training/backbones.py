"""Backbones by name: images (N, 3, H, W) -> features (N, D). A registry, like the methods."""

from __future__ import annotations

from torch import nn

from genview.errors import ConfigError
from genview.registry import Registry

#: Backbone name -> builder(**options) -> (module, feature dimension).
BACKBONES = Registry("backbone")
backbone = BACKBONES.register

# Published ViT sizes (timm names); `vit` takes the same keys for any other size (the tiny default uses it).
VIT_PRESETS = {
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6, patch_size=16),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16),
}


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


def sincos_position_embedding(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0):
    """MoCo v3's fixed 2-D sin-cos position embedding, (grid_h * grid_w, dim): a quarter of the channels each for
    sin and cos of the width coordinate, then of the height coordinate, at frequencies ``temperature^(-k / (dim/4))``.
    Tokens are ordered with the width coordinate outermost, as the reference's ``meshgrid(grid_w, grid_h)``."""
    import torch

    if dim % 4:
        raise ConfigError(f"a sin-cos position embedding needs embed_dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    w, h = torch.meshgrid(
        torch.arange(grid_w, dtype=torch.float32), torch.arange(grid_h, dtype=torch.float32), indexing="ij"
    )
    out_w, out_h = w.flatten()[:, None] * omega, h.flatten()[:, None] * omega
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)


@backbone("convnet")
def convnet(*, width: int = 32, depth: int = 3, image_size: int = 32) -> tuple[nn.Module, int]:
    """A small conv net for tiny images: ``depth`` blocks of 3x3 conv (width, 2 x width, ...), BatchNorm, ReLU and
    2x2 max-pool, then global average pooling. Trains in seconds on a CPU (the embedded default's backbone);
    ``image_size`` is accepted for symmetry with the ViTs and not needed."""
    layers, channels = [], 3
    for block in range(depth):
        out = width * 2**block
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), channels


@backbone("pixels")
def pixels(*, size: int = 32) -> tuple[nn.Module, int]:
    """Raw pixels as the feature, the reference a learned representation must beat: the (normalised) image average-
    pooled to ``size`` x ``size`` and flattened, 3 x size² values; no parameters. At ``size`` equal to the image
    side it is the flattened image itself."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Flatten()), 3 * size * size


def _vit(
    *,
    image_size: int = 224,
    patch_size: int = 16,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    mlp_ratio: float = 4.0,
    pos_embed: str = "learned",
    freeze_patch_embed: bool = False,
) -> tuple[nn.Module, int]:
    """timm's ViT with the class token as the feature. ``pos_embed: sincos`` and ``freeze_patch_embed`` are the
    MoCo v3 recipe: a fixed 2-D sin-cos position embedding (zeros for the class token) and a patch projection that
    is never trained (its "stop-gradient" on the first layer, which stabilises training)."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    if pos_embed not in ("learned", "sincos"):
        raise ConfigError(f"backbone option pos_embed must be learned or sincos, got {pos_embed!r}")
    model = VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        num_classes=0,
        global_pool="token",
        # Other input sizes interpolate the position embedding (multi-crop's small crops); the native size is
        # computed exactly as without it.
        dynamic_img_size=True,
    )
    if pos_embed == "sincos":
        grid_h, grid_w = model.patch_embed.grid_size
        fixed = torch.cat([torch.zeros(1, embed_dim), sincos_position_embedding(grid_h, grid_w, embed_dim)])
        model.pos_embed = nn.Parameter(fixed[None], requires_grad=False)
    if freeze_patch_embed:
        model.patch_embed.proj.requires_grad_(False)
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
    builder = BACKBONES[name]
    try:
        return builder(**options)
    except TypeError as error:
        raise ConfigError(f"backbone {name!r}: bad option(s) {sorted(options)}: {error}") from None
