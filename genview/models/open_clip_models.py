"""open_clip models by role (fg_encoder): one loader for built-in names and local folders, patch tokens of
ViT towers, and a tiny random-weight stand-in (:mod:`genview.models.tiny_clip` trains one).

The stand-in is written in open_clip's own ``local-dir:`` layout (``open_clip_config.json`` +
``open_clip_model.safetensors``), so the embedded default loads it through the code that loads ViT-H-14.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from genview.errors import GenviewError
from genview.io import atomic_path
from genview.models.offline import is_offline, missing_offline_error, open_clip_cache_dir

log = logging.getLogger(__name__)

LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth")

# The text tower is unused for foreground analysis, but the real CLIP BPE tokenizer (bundled with open_clip)
# needs the full 49408-token vocabulary; everything else about it stays as small as possible.
TINY_TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def load_open_clip(spec: dict, device: str = "cpu", *, role: str = "fg_encoder"):
    """Load ``spec`` ({model, pretrained}) as (model in eval mode, inference preprocess transform).

    ``model`` is an open_clip name (``ViT-H-14``, weights from ``pretrained``) or ``local-dir:PATH`` (config
    and weights from that folder; ``pretrained`` is ignored).
    """
    import open_clip

    name, pretrained = spec["model"], spec.get("pretrained")
    cache_dir = open_clip_cache_dir()
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(name[len(LOCAL_DIR_PREFIX) :])
        if not (folder / CONFIG_FILE).is_file():
            raise GenviewError(
                f"models.{role}.model: {folder} is not an open_clip model folder (no {CONFIG_FILE}); "
                "build the tiny stand-ins (rule build_tiny_models) or point it at a real model"
            )
        # open_clip would silently fall back to random weights.
        if not any(path.suffix in CHECKPOINT_SUFFIXES for path in folder.iterdir()):
            raise GenviewError(f"models.{role}.model: {folder} has no weights file ({WEIGHTS_FILE})")
        if pretrained:
            log.warning("models.%s.pretrained=%r is ignored for %s", role, pretrained, name)
        pretrained = None
    elif not pretrained and not name.startswith(HF_HUB_PREFIX):
        log.warning("models.%s: %s has no pretrained weights set; it is randomly initialised", role, name)
    elif (
        is_offline()
        and not (pretrained and os.path.isfile(os.path.expanduser(pretrained)))
        and not open_clip_cached(name, pretrained, cache_dir)
    ):
        # Checked here: offline, open_clip would still try a URL download for weights that are not on the hub.
        raise missing_offline_error(role, f"open_clip {name}" + (f" / {pretrained}" if pretrained else ""))
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, cache_dir=cache_dir
        )
    except (RuntimeError, ValueError, OSError) as error:
        raise GenviewError(
            f"models.{role}: cannot load open_clip model {name!r} (pretrained {pretrained!r}): {error}"
        ) from None
    return model.eval(), preprocess


def _pretrained_cfg(name: str, pretrained: str) -> dict:
    """open_clip's download entry for a built-in model name and pretrained tag; a GenviewError when unknown."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    cleaned = name.replace("/", "-")  # as open_clip.create_model does
    cfg = get_pretrained_cfg(cleaned, pretrained)
    if not cfg:
        tags = list_pretrained_tags_by_model(cleaned)
        raise GenviewError(
            f"open_clip has no pretrained tag {pretrained!r} for {name!r}"
            + (f" (tags: {', '.join(tags)})" if tags else " (unknown model name)")
        )
    return cfg


def _hub_files(cfg: dict) -> tuple[str, list[str]] | None:
    """(repository, candidate weight files in open_clip's order of preference) of a hub-hosted tag, else None."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if not cfg.get("hf_hub"):
        return None
    repository, filename = os.path.split(cfg["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    # open_clip first looks for a safetensors file beside a pickle
    if filename == HF_WEIGHTS_NAME:
        return repository, [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return repository, [filename[:-4] + ".safetensors", filename]
    return repository, [filename]


def open_clip_download(name: str, pretrained: str | None, cache_dir: str | None) -> list[str]:
    """Download what ``create_model_and_transforms(name, pretrained, cache_dir=cache_dir)`` reads, with open_clip's
    own download functions; returns the local files."""
    from open_clip.pretrained import download_pretrained, download_pretrained_from_hf

    if name.startswith(HF_HUB_PREFIX):
        repository = name[len(HF_HUB_PREFIX) :]
        return [
            download_pretrained_from_hf(repository, filename=CONFIG_FILE, cache_dir=cache_dir),
            download_pretrained_from_hf(repository, cache_dir=cache_dir),
        ]
    return [download_pretrained(_pretrained_cfg(name, pretrained), cache_dir=cache_dir)]


def open_clip_cached(name: str, pretrained: str | None, cache_dir: str | None) -> bool:
    """Whether the weights (and, for ``hf-hub:`` models, the config) that open_clip would download are cached."""
    from huggingface_hub import try_to_load_from_cache

    def in_hub_cache(repository: str, filenames: list[str]) -> bool:
        return any(isinstance(try_to_load_from_cache(repository, f, cache_dir=cache_dir), str) for f in filenames)

    if name.startswith(HF_HUB_PREFIX):
        repository = name[len(HF_HUB_PREFIX) :]
        return in_hub_cache(repository, [CONFIG_FILE]) and in_hub_cache(
            repository, _hub_files({"hf_hub": repository + "/"})[1]
        )
    cfg = _pretrained_cfg(name, pretrained)
    if "file" in cfg:
        return os.path.isfile(cfg["file"])
    hub = _hub_files(cfg)
    if hub is not None:  # open_clip prefers the hub when a tag has both
        return in_hub_cache(*hub)
    folder = cache_dir or os.path.expanduser("~/.cache/clip")  # open_clip's default for URL downloads
    return os.path.isfile(os.path.join(folder, os.path.basename(cfg.get("url", ""))))


def _vit_tower(model):
    """The image tower, if it is a ViT whose second output is the patch tokens; else a GenviewError."""
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    if not isinstance(visual, VisionTransformer):
        raise GenviewError(
            f"the image tower is a {type(visual).__name__}, which has no patch tokens; "
            "foreground analysis needs an open_clip ViT (e.g. ViT-H-14)"
        )
    # With an attentional pooler the "tokens" are pooler queries, and with pool_type none the class token is
    # mixed in: neither is one token per patch.
    if visual.attn_pool is not None or visual.pool_type == "none":
        raise GenviewError("the image tower pools with attention or keeps the class token; it has no patch tokens")
    return visual


def token_grid(model) -> tuple[int, int]:
    """(rows, columns) of the patch-token grid."""
    return tuple(_vit_tower(model).grid_size)


def patch_tokens(model, images):
    """Patch tokens (B, h·w, D) of preprocessed ``images``, row-major, after the last LayerNorm, unprojected.

    open_clip's ViT returns ``(pooled, tokens)`` when ``output_tokens`` is set: tokens are
    ``ln_post(x)[:, 1:]`` and only the pooled output goes through ``proj``. The flag is set for this call
    only, so ``encode_image`` elsewhere keeps returning the pooled embedding.
    """
    visual = _vit_tower(model)
    previous = visual.output_tokens
    visual.output_tokens = True
    try:
        _, tokens = visual(images)
    finally:
        visual.output_tokens = previous
    if visual.final_ln_after_pool:
        # These towers (CLIPA) normalise only the pooled output; apply the same LayerNorm to the tokens.
        tokens = visual.ln_post(tokens)
    return tokens


def build_tiny_open_clip(
    out_dir: str | os.PathLike,
    *,
    image_size: int = 32,
    patch_size: int = 4,
    width: int = 64,
    layers: int = 2,
    heads: int = 2,
    embed_dim: int = 64,
    seed: int = 0,
) -> Path:
    """Write a tiny random-weight open_clip ViT into ``out_dir``, reloadable as ``local-dir:out_dir``."""
    if width % heads:
        raise ValueError(f"width {width} is not divisible by heads {heads}")
    vision_cfg = tiny_vit_cfg(image_size=image_size, patch_size=patch_size, width=width, layers=layers, heads=heads)
    return _write_tiny_clip(vision_cfg, embed_dim, image_size, seed, Path(out_dir))


def tiny_vit_cfg(*, image_size: int, patch_size: int, width: int, layers: int, heads: int) -> dict:
    """open_clip's ``vision_cfg`` of the tiny ViT (open_clip derives the number of heads from ``head_width``)."""
    return {
        "image_size": image_size,
        "patch_size": patch_size,
        "width": width,
        "layers": layers,
        "head_width": width // heads,
    }


def _write_tiny_clip(vision_cfg: dict, embed_dim: int, image_size: int, seed: int, out_dir: Path, train=None) -> Path:
    """Build a seeded random-weight CLIP with the tiny text tower, optionally train it (``train(model)``), and save it
    in open_clip's ``local-dir:`` layout (weights first: the config is what marks the folder as a model)."""
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    model_cfg = {"embed_dim": embed_dim, "vision_cfg": vision_cfg, "text_cfg": TINY_TEXT_CFG}
    preprocess_cfg = {
        "size": image_size,
        "mean": list(OPENAI_DATASET_MEAN),
        "std": list(OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**model_cfg)
        if train is not None:
            train(model)
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(tmp))
    with atomic_path(out_dir / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n")
    return out_dir


# --- Quality encoder (GenView / GenView++ quality weights) --------------------------------------------------

# timm's smallest ConvNeXt; like convnext_base_w it is a timm tower whose last stage has stride 32.
TINY_QUALITY_TOWER = "convnext_atto"


def token_map_and_embedding(model, images):
    """Spatial tokens (B, h, w, D) and the projected image embedding (B, E) of preprocessed ``images``.

    timm towers (ConvNeXt): one trunk pass gives both. The tokens are the last stage's map before the head's
    pooling and norm (the official patched timm returned exactly this); the embedding is the rest of what
    ``encode_image`` computes from it: the trunk head (pool, norm, and its classifier where open_clip uses
    that as the projection; hence not ``pre_logits``), then the adapter's projection.
    ViT towers: the patch tokens of :func:`patch_tokens` and ``encode_image``.
    """
    from open_clip.timm_model import TimmModel

    visual = model.visual
    if isinstance(visual, TimmModel):
        feature_map = visual.trunk.forward_features(images)
        if feature_map.ndim != 4:
            raise GenviewError(
                f"the timm image tower {type(visual.trunk).__name__} gives {feature_map.ndim}-d features, "
                "not a (B, C, h, w) map; the quality encoder needs a convolutional timm tower or a ViT"
            )
        embedding = visual.head(visual.trunk.forward_head(feature_map))
        return feature_map.permute(0, 2, 3, 1), embedding
    tokens = patch_tokens(model, images)
    return tokens.unflatten(1, token_grid(model)), model.encode_image(images)


def build_tiny_quality_encoder(
    out_dir: str | os.PathLike, *, image_size: int = 64, embed_dim: int = 32, seed: int = 0
) -> Path:
    """Write a tiny random-weight stand-in for convnext_base_w into ``out_dir`` (``local-dir:out_dir``).

    Same shape of model: a timm ConvNeXt tower with ``timm_pool ""`` and a linear projection. 64 px is the
    smallest input whose stride-32 map has 2x2 tokens, the fewest for a soft mask with a distinct min and max.
    """
    vision_cfg = {
        "timm_model_name": TINY_QUALITY_TOWER,
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": image_size,
    }
    return _write_tiny_clip(vision_cfg, embed_dim, image_size, seed, Path(out_dir))
