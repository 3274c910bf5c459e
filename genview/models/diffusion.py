"""Diffusion pipelines by role (unclip, text2img): one loader for hub ids and local folders, and tiny stand-ins.

The stand-ins are random-weight pipelines in diffusers' own `save_pretrained` layout with the real CLIP BPE tokenizer
(shipped inside open_clip), so the embedded default loads them through exactly the code that loads SD 2.1.
"""

from __future__ import annotations

from pathlib import Path

from genview.errors import GenviewError
from genview.models import is_local_path
from genview.models.offline import hub_cache_dir, is_offline, missing_offline_error

# Per role: the diffusers class and the scheduler the method uses with it (docs/method.md §1).
PIPELINE_CLASSES = {"unclip": "StableUnCLIPImg2ImgPipeline", "text2img": "StableDiffusionPipeline"}
SCHEDULERS = {"unclip": None, "text2img": "DPMSolverMultistepScheduler"}

TINY_HIDDEN = 32
TINY_CONTEXT = 77


def load_pipeline(role: str, spec: dict, device: str = "cpu"):
    """Load the pipeline of ``role`` from ``spec`` ({path, revision, variant}): fp16 on CUDA, fp32 on CPU.
    ``{renderer: shapes, dataset: NAME}`` gives the shapes renderer instead (genview.data.shapes_renderer)."""
    if spec.get("renderer"):
        from genview.data import SHAPES_ROOT
        from genview.data.shapes_renderer import ShapesRenderer

        return ShapesRenderer(role, SHAPES_ROOT.format(name=spec["dataset"]), spec.get("rules"))
    import diffusers
    import torch

    path = spec["path"]
    if is_local_path(path) and not (Path(path) / "model_index.json").is_file():
        raise GenviewError(f"models.{role}.path: {path} is not a diffusers pipeline folder (no model_index.json)")
    pipeline_class = getattr(diffusers, PIPELINE_CLASSES[role])
    dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
    offline = is_offline()
    try:
        pipeline = pipeline_class.from_pretrained(
            path,
            dtype=dtype,
            revision=spec.get("revision"),
            variant=spec.get("variant"),
            cache_dir=hub_cache_dir(),
            local_files_only=offline,
        )
    except (OSError, ValueError) as error:
        if offline and not is_local_path(path) and not Path(path).is_dir():
            described = path + "".join(f" ({key} {spec[key]})" for key in ("revision", "variant") if spec.get(key))
            raise missing_offline_error(role, described, str(error)) from None
        raise GenviewError(f"models.{role}.path: cannot load {path!r} as {PIPELINE_CLASSES[role]}: {error}") from None
    if SCHEDULERS[role]:
        scheduler_class = getattr(diffusers, SCHEDULERS[role])
        pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def clip_bpe_tokenizer(max_length: int = TINY_CONTEXT):
    """A transformers CLIPTokenizer with the full CLIP BPE vocabulary, built offline from open_clip's copy."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe()) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=max_length)


def _tiny_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=TINY_HIDDEN,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TINY_CONTEXT,
            projection_dim=TINY_HIDDEN,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def _tiny_unet(latent_size: int, unclip: bool):
    from diffusers import UNet2DConditionModel

    extra = dict(class_embed_type="projection", projection_class_embeddings_input_dim=2 * TINY_HIDDEN) if unclip else {}
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=(2, 4),
        cross_attention_dim=TINY_HIDDEN,
        use_linear_projection=True,
        **extra,
    )


def _tiny_vae(image_size: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=image_size,
    )


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_tiny_pipeline(role: str, out_dir: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """Write a tiny random-weight pipeline for ``role`` to ``out_dir`` (diffusers save_pretrained layout)."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    tokenizer = clip_bpe_tokenizer()
    latent_size = image_size // 2  # the tiny VAE has two blocks: a scale factor of 2
    common = dict(
        tokenizer=tokenizer, text_encoder=_tiny_text_encoder(tokenizer), vae=_tiny_vae(image_size), scheduler=_ddim()
    )
    if role == "text2img":
        pipeline = StableDiffusionPipeline(
            unet=_tiny_unet(latent_size, unclip=False),
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
            **common,
        )
    elif role == "unclip":
        pipeline = StableUnCLIPImg2ImgPipeline(
            feature_extractor=CLIPImageProcessor(
                size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
            ),
            image_encoder=CLIPVisionModelWithProjection(
                CLIPVisionConfig(
                    hidden_size=TINY_HIDDEN,
                    projection_dim=TINY_HIDDEN,
                    intermediate_size=37,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    image_size=image_size,
                    patch_size=4,
                )
            ),
            image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=TINY_HIDDEN),
            image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
            unet=_tiny_unet(latent_size, unclip=True),
            **common,
        )
    else:
        raise GenviewError(f"no tiny pipeline for role {role!r} (roles: {sorted(PIPELINE_CLASSES)})")
    out_dir = Path(out_dir)
    pipeline.save_pretrained(out_dir)
    return out_dir
