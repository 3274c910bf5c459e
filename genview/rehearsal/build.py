"""The dress rehearsal's models: every role at its real architecture and size, with random weights.

Built offline from the published configurations kept in ``config/model_configs/`` (the hub's file layout, weights
left out) and from open_clip's shipped model configs, and saved in each library's own format, so they load through
the same loaders as the real checkpoints (:mod:`genview.models.diffusion`, :mod:`genview.models.open_clip_models`,
:mod:`genview.models.chat_llm`):

=================  ===========================================================  ==========================
role               architecture (published)                                      format
=================  ===========================================================  ==========================
unclip             stabilityai/stable-diffusion-2-1-unclip: UNet, VAE, OpenCLIP  diffusers ``save_pretrained``
                   ViT-H text encoder, CLIP ViT-H image encoder, normalizer,     (the fp16 variant when the
                   noise-augmentation and DDIM schedulers, tokenizer, processor  config loads one)
text2img           stabilityai/stable-diffusion-2-1: UNet, VAE, text encoder,    diffusers ``save_pretrained``
                   tokenizer, scheduler (the loader switches it to DPM-Solver)
fg_encoder         open_clip ViT-H-14                                            open_clip ``local-dir:``
quality_encoder    open_clip convnext_base_w                                     open_clip ``local-dir:``
complexity_llm     deepseek-ai/DeepSeek-V2-Lite-Chat: transformers' own          transformers
                   DeepseekV2ForCausalLM (MLA attention, 64+2 experts) with the  ``save_pretrained``, bf16
                   published config; a byte-level tokenizer with its special
                   tokens at their published ids and its chat template
=================  ===========================================================  ==========================

Sizes: ``full`` is the published configurations as they are; ``small`` (the CPU rehearsal) patches a few widths and
depths of each (``config/model_configs/small.yaml``). The tokenizers are the only stand-ins: the CLIP BPE is the real
one (shipped inside open_clip), DeepSeek's 100k-token BPE is not available offline.

Import-light: heavy imports happen inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

from genview.errors import GenviewError

log = logging.getLogger(__name__)

MODEL_CONFIGS = Path(__file__).resolve().parents[2] / "config" / "model_configs"
SIZES = ("full", "small")
ROLES = ("unclip", "text2img", "fg_encoder", "quality_encoder", "complexity_llm")
# Role -> the published model whose configuration it is built from.
PUBLISHED = {
    "unclip": "stable-diffusion-2-1-unclip",
    "text2img": "stable-diffusion-2-1",
    "fg_encoder": "ViT-H-14",
    "quality_encoder": "convnext_base_w",
    "complexity_llm": "DeepSeek-V2-Lite-Chat",
}
DIFFUSION_MODULES = {
    "unclip": ("unet", "vae", "text_encoder", "image_encoder", "image_normalizer"),
    "text2img": ("unet", "vae", "text_encoder"),
}
SEED = 0


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise GenviewError(f"rehearsal model size must be one of {SIZES}, got {size!r}")


def _small_patch(model: str, component: str) -> dict:
    import yaml

    patches = yaml.safe_load((MODEL_CONFIGS / "small.yaml").read_text()) or {}
    return (patches.get(model) or {}).get(component) or {}


def published_config(model: str, name: str, size: str = "full") -> dict:
    """A published configuration: ``<model>/<name>`` when it is a file (``config.json``,
    ``generation_config.json``), else the one ``*config.json`` in the component folder ``<model>/<name>/``;
    patched by ``small.yaml``'s ``<model>: <name>:`` entry for size small."""
    from genview.config.load import merge_patch

    _check_size(size)
    path = MODEL_CONFIGS / model / name
    files = [path] if path.is_file() else sorted(path.glob("*config.json"))
    if len(files) != 1:
        raise GenviewError(f"{path}: expected one *config.json (the published configuration), found {files}")
    config = json.loads(files[0].read_text())
    return merge_patch(config, _small_patch(model, name)) if size == "small" else config


# --- diffusion pipelines -------------------------------------------------------------------------------------------


def _diffusion_module(model: str, component: str, size: str):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = published_config(model, component, size)
    if component == "unet":
        return UNet2DConditionModel.from_config(config)
    if component == "vae":
        return AutoencoderKL.from_config(config)
    if component == "image_normalizer":
        return StableUnCLIPImageNormalizer.from_config(config)
    if component == "text_encoder":
        return CLIPTextModel(CLIPTextConfig(**config))
    if component == "image_encoder":
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    raise GenviewError(f"{model}: no module component {component!r}")


def diffusion_modules(role: str, size: str) -> dict:
    """The pipeline's weight-holding modules, built on the current default device (``meta`` to count them)."""
    return {name: _diffusion_module(PUBLISHED[role], name, size) for name in DIFFUSION_MODULES[role]}


def build_pipeline(role: str, size: str):
    """The random-weight pipeline of ``role``: modules from :func:`diffusion_modules`, schedulers, tokenizer and
    image processor from the published configurations."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, StableUnCLIPImg2ImgPipeline
    from transformers import CLIPImageProcessor

    from genview.models.diffusion import clip_bpe_tokenizer

    model = PUBLISHED[role]
    tokenizer_config = published_config(model, "tokenizer", size)
    tokenizer = clip_bpe_tokenizer(tokenizer_config["model_max_length"])
    tokenizer.pad_token = tokenizer_config["pad_token"]  # SD 2's tokenizer pads with "!" (open_clip's id 0)
    modules = diffusion_modules(role, size)
    scheduler = DDIMScheduler.from_config(published_config(model, "scheduler", size))
    if role == "text2img":
        return StableDiffusionPipeline(
            **modules,
            tokenizer=tokenizer,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
    processor = published_config(model, "feature_extractor", size)
    processor.pop("feature_extractor_type", None)
    return StableUnCLIPImg2ImgPipeline(
        **modules,
        tokenizer=tokenizer,
        scheduler=scheduler,
        image_noising_scheduler=DDPMScheduler.from_config(published_config(model, "image_noising_scheduler", size)),
        feature_extractor=CLIPImageProcessor(**processor),
    )


# --- open_clip encoders --------------------------------------------------------------------------------------------


def open_clip_config(role: str, size: str) -> dict:
    """open_clip's shipped model config of the role's model (ViT-H-14, convnext_base_w), patched for size small."""
    import open_clip

    from genview.config.load import merge_patch

    _check_size(size)
    name = PUBLISHED[role]
    config = open_clip.get_model_config(name)
    if config is None:
        raise GenviewError(f"open_clip has no model config {name!r}")
    return merge_patch(config, _small_patch(name, "model_cfg")) if size == "small" else config


def build_open_clip(role: str, size: str):
    from open_clip.model import CLIP

    return CLIP(**open_clip_config(role, size))


# --- the caption LLM -----------------------------------------------------------------------------------------------


def chat_config(size: str):
    from transformers import DeepseekV2Config

    return DeepseekV2Config(**published_config(PUBLISHED["complexity_llm"], "config.json", size))


def build_chat_model(size: str, dtype=None):
    from transformers import DeepseekV2ForCausalLM

    return DeepseekV2ForCausalLM._from_config(chat_config(size), dtype=dtype)


def chat_tokenizer(size: str):
    """Byte-level BPE without merges (every text can be spelled), with DeepSeek's special tokens at the published
    config's bos/eos ids and its chat template, in place of DeepSeek's 100k-token BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = PUBLISHED["complexity_llm"]
    settings = published_config(model, "tokenizer_config.json", size)
    config = published_config(model, "config.json", size)
    specials = {settings["bos_token"]: config["bos_token_id"], settings["eos_token"]: config["eos_token_id"]}
    vocab = {token: i for i, token in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update(specials)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=settings["bos_token"],
        eos_token=settings["eos_token"],
        pad_token=settings["pad_token"],
        model_max_length=settings["model_max_length"],
    )
    tokenizer.chat_template = settings["chat_template"]
    return tokenizer


# --- counting and building -----------------------------------------------------------------------------------------


def role_modules(role: str, size: str) -> dict:
    """Component name -> module of ``role`` at ``size``, built on the current default device."""
    if role in DIFFUSION_MODULES:
        return diffusion_modules(role, size)
    if role in ("fg_encoder", "quality_encoder"):
        model = build_open_clip(role, size)
        return {"image": model.visual, "model": model}
    if role == "complexity_llm":
        return {"model": build_chat_model(size)}
    raise GenviewError(f"no rehearsal model for role {role!r} (roles: {', '.join(ROLES)})")


def parameter_counts(size: str, roles=ROLES) -> dict[str, dict[str, int]]:
    """Parameters per role and component, counted on the meta device (no weights are allocated)."""
    import torch

    _check_size(size)
    counts = {}
    with torch.device("meta"):
        for role in roles:
            modules = role_modules(role, size)
            counts[role] = {name: sum(p.numel() for p in module.parameters()) for name, module in modules.items()}
            if "image" in counts[role]:  # open_clip: the text tower is the rest (open_clip's model profile)
                counts[role]["text"] = counts[role]["model"] - counts[role]["image"]
    return counts


@contextlib.contextmanager
def _seeded(seed: int):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _save_pipeline(role: str, size: str, out_dir: Path, device: str, variant: str | None) -> None:
    import torch

    with _seeded(SEED), torch.device(device):
        pipeline = build_pipeline(role, size)
    if variant == "fp16":
        pipeline.to(torch.float16)
    elif variant:
        raise GenviewError(f"models.{role}.variant: only fp16 (or none) can be built, got {variant!r}")
    pipeline.save_pretrained(out_dir, variant=variant, safe_serialization=True)


def _save_open_clip(role: str, size: str, out_dir: Path, device: str) -> None:
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    from genview.io import atomic_path
    from genview.models.open_clip_models import CONFIG_FILE, WEIGHTS_FILE

    model_cfg = open_clip_config(role, size)
    with _seeded(SEED), torch.device(device):
        model = build_open_clip(role, size)
    preprocess_cfg = {
        "size": model_cfg["vision_cfg"]["image_size"],
        "mean": list(OPENAI_DATASET_MEAN),
        "std": list(OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file({key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, str(tmp))
    with atomic_path(out_dir / CONFIG_FILE) as tmp:  # written last: the config marks the folder as a model
        tmp.write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n")


def _save_chat_model(size: str, out_dir: Path, device: str) -> None:
    import torch
    from transformers import GenerationConfig

    model_name = PUBLISHED["complexity_llm"]
    with _seeded(SEED), torch.device(device):
        model = build_chat_model(size, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(**published_config(model_name, "generation_config.json", size))
    chat_tokenizer(size).save_pretrained(out_dir)
    model.save_pretrained(out_dir, max_shard_size="5GB")


def build_rehearsal_models(
    out_dir: str | Path, size: str, device: str = "cpu", roles=ROLES, variants: dict | None = None
) -> dict[str, Path]:
    """Write every role's random-weight model at ``size`` under ``out_dir/<role>``; ``variants`` (role -> e.g.
    "fp16") saves a diffusion pipeline as that weights variant, the way the config loads it."""
    _check_size(size)
    variants = variants or {}
    out_dir = Path(out_dir)
    written = {}
    for role in roles:
        if role not in ROLES:
            raise GenviewError(f"no rehearsal model for role {role!r} (roles: {', '.join(ROLES)})")
        # Built in a side folder and moved into place whole: a killed build leaves no folder that looks complete.
        folder, partial = out_dir / role, out_dir / f".{role}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("building %s (%s, size %s) on %s", role, PUBLISHED[role], size, device)
        if role in DIFFUSION_MODULES:
            _save_pipeline(role, size, partial, device, variants.get(role))
        elif role in ("fg_encoder", "quality_encoder"):
            _save_open_clip(role, size, partial, device)
        else:
            _save_chat_model(size, partial, device)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        written[role] = folder
    return written
