"""Per-GPU rates of every stage, measured on the device at hand, for `genview config estimate`.

    python benchmarks/rates.py --config config/paper.yaml --out results/benchmarks/rates.yaml
    genview config estimate config/paper.yaml results/benchmarks/rates.yaml      # the estimate from measured rates

Measures, side by side in one run, with the config's models, settings and experiments:
- generation, per source (IC, TC, ITC): images/s of genview's shard generator at the configured steps, batch size
  and the pipeline's own resolution (one setting group, as in a full-size shard), beside an official-style loop
  (one image per pipeline call) and beside the physical limit (UNet FLOPs per image and step, counted by torch's
  FlopCounterMode, x steps / the card's peak dense bf16/fp16 FLOP/s from PEAK_DENSE_FLOPS or --peak-flops);
- the foreground encoder (patch tokens; model alone and with the job's serial image decoding), the quality encoder
  (token map and embedding of training views), the caption-complexity chat model (captions/s, re-asks included);
- pre-training, for each paper experiment (resolved by genview.training.experiments, at its precision and its
  per-GPU batch): the model step alone (forward, backward, optimiser, quality weights: the last epoch's step, so
  that GenView++'s quality terms are on) beside the input pipeline
  alone (decode, augmented views, generated views) with the CPU count per GPU the SLURM profile requests, and the
  loader cores one GPU needs to feed the model step (one core's rate of each augmentation: benchmarks/loader.py);
- evaluation: feature extraction and the linear probe's backbone passes (model alone beside the input pipeline).

The rates written are per GPU, in the config's estimate.rates format, with estimate.rates_from naming the device.
Where the input pipeline is slower than the model, the rate written is the pipeline's (what a job would see).
Data are synthetic (shapes drawn at --source-size with noise, saved as JPEG, repeated to fill the batches).
Models: the config's (hub ids need their weights in the cache: genview models fetch), --tiny stand-ins (a CPU
rehearsal), --models-dir DIR (DIR/<role>, e.g. full-size random-weight builds), --random-encoders (the open_clip
architectures of the config without their weights: speed is the same). Small sizes for a CPU rehearsal:
--steps, --images, --train-batch, --train-image-size, --train-steps, --experiments.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import fnmatch
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genview.config.load import load_config_files, validate_config  # noqa: E402
from genview.contracts import MANIFEST, SHARD  # noqa: E402
from genview.data.images import load_rgb  # noqa: E402
from genview.data.index import index_dataset  # noqa: E402
from genview.data.shapes import make_shapes  # noqa: E402
from genview.errors import GenviewError  # noqa: E402
from genview.vocabulary import SOURCE_ROLES, SOURCES  # noqa: E402

# Vendor datasheet peak dense (no sparsity) bf16/fp16 tensor-core FLOP/s, by a substring of the device name as
# torch reports it; the first match wins (so the more specific names come first).
PEAK_DENSE_FLOPS = [
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("B200", 2250e12),
    ("B100", 1750e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("A40", 150e12),
    ("RTX 6000 Ada", 365e12),
    ("RTX A6000", 155e12),
    ("A6000", 155e12),
    ("L4", 121e12),
    ("A30", 165e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
    ("MI300X", 1307e12),
    ("MI250X", 383e12),
]
OPEN_CLIP_ROLES = ("fg_encoder", "quality_encoder")
PHASES = ("generation", "foreground", "quality", "llm", "pretrain", "evaluation")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        nargs="+",
        default=[str(REPO / "config/paper.yaml")],
        help="config file(s), merged in order (default: config/paper.yaml)",
    )
    parser.add_argument("--out", default="results/benchmarks/rates.yaml", help="rates file to write")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")
    parser.add_argument("--only", nargs="+", choices=PHASES, default=list(PHASES), help="measure only these")
    models = parser.add_argument_group("models")
    models.add_argument("--tiny", action="store_true", help="tiny random-weight stand-ins for every role")
    models.add_argument("--models-dir", help="DIR/<role> replaces models.<role> where it exists")
    models.add_argument(
        "--random-encoders",
        action="store_true",
        help="the config's open_clip architectures without pretrained weights (no download)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES))
    gen.add_argument("--images", type=int, default=32, help="views per source for the shard generator")
    gen.add_argument("--official-images", type=int, default=8, help="views per source for the official-style loop")
    gen.add_argument("--steps", type=int, help="denoising steps (default: the config's generation.steps)")
    gen.add_argument("--gen-batch", type=int, help="images per pipeline call (default: generation.batch_size)")
    gen.add_argument("--peak-flops", type=float, help="the device's peak dense bf16/fp16 FLOP/s (default: table)")
    enc = parser.add_argument_group("encoders and chat model")
    enc.add_argument("--encoder-batch", type=int, help="batch of the encoders (default: analysis.batch_size)")
    enc.add_argument("--encoder-repeats", type=int, default=5)
    enc.add_argument("--captions", type=int, default=4, help="captions scored by the chat model")
    enc.add_argument("--max-new-tokens", type=int, help="chat model answer cap (default: the config's)")
    train = parser.add_argument_group("pre-training and evaluation")
    train.add_argument("--experiments", nargs="+", default=["*"], help="name patterns of the experiments to measure")
    train.add_argument("--train-steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    train.add_argument(
        "--train-batch", type=int, help="per-GPU batch (default: recipe batch_size / gpus), also the evaluation batches"
    )
    train.add_argument("--train-image-size", type=int, help="view size (default: the recipe's)")
    train.add_argument(
        "--workers", type=int, help="loader processes per GPU (default: cpus_per_gpu of profiles/slurm for pretrain)"
    )
    train.add_argument(
        "--input-rounds", type=int, default=2, help="batches timed per loader process when measuring an input pipeline"
    )
    data = parser.add_argument_group("synthetic data")
    data.add_argument("--source-size", type=int, default=384, help="side of the synthetic source JPEGs")
    data.add_argument("--unique-images", type=int, default=64, help="distinct images (rows repeat them)")
    return parser.parse_args(argv)


# --- the device ----------------------------------------------------------------------------------------------------
def resolve(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def peak_flops(name: str, override: float | None) -> float | None:
    if override:
        return override
    return next((flops for key, flops in PEAK_DENSE_FLOPS if key in name), None)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(function, device: str) -> float:
    sync(device)
    started = time.perf_counter()
    function()
    sync(device)
    return time.perf_counter() - started


def loader_batches_per_second(loader, workers: int, rounds: int) -> float:
    """Steady-state batches/s of a DataLoader: after the first batch (the workers' start; every worker has its first
    batch under way by then), ``rounds`` x ``workers`` batches take ``rounds`` batch times of one worker."""
    batches = iter(loader)
    next(batches)
    count = rounds * max(workers, 1)
    seconds = timed(lambda: [next(batches) for _ in range(count)], "cpu")
    return count / seconds


def harmonic_mean(values: list[float]) -> float:
    return len(values) / sum(1 / v for v in values)


# --- data ----------------------------------------------------------------------------------------------------------
def prepare_data(folder: Path, rows: int, unique: int, size: int, save_size: int) -> dict:
    """A train manifest of ``rows`` rows (``unique`` distinct noisy JPEGs of side ``size``, with captions) and one
    view manifest per source (JPEGs of side ``save_size``, like generated views)."""
    per_class = max(1, math.ceil(unique / 12))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        make_shapes("results/datasets/bench", train_per_class=per_class, test_per_class=1, image_size=min(size, 1024))
        spec = validate_config({"datasets": {"bench": {"kind": "shapes"}}})["datasets"]["bench"]
        manifest = index_dataset("bench", spec, "results/data/bench")
    finally:
        os.chdir(cwd)
    train = manifest[manifest.split == "train"].head(unique).reset_index(drop=True)
    generator = np.random.default_rng(0)
    paths, views = [], []
    (folder / "jpeg").mkdir()
    for i, path in enumerate(train.path):
        image = np.asarray(load_rgb(folder / path).resize((size, size * 3 // 4)), dtype=np.float32)
        noisy = np.clip(image + generator.normal(0, 8, image.shape), 0, 255).astype(np.uint8)  # natural-photo entropy
        paths.append(str(folder / "jpeg" / f"{i}.jpg"))
        Image.fromarray(noisy).save(paths[-1], quality=90)
        views.append(str(folder / "jpeg" / f"{i}_view.jpg"))
        Image.fromarray(noisy).resize((save_size, save_size)).save(views[-1], quality=75)
    repeat = np.arange(rows) % len(train)
    rows_frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(rows)],
            "path": [paths[j] for j in repeat],
            "caption": list(train.caption.iloc[repeat]),
            "label": list(train.label.iloc[repeat]),
            "split": "train",
            "mask": "",
        }
    )
    MANIFEST.write(rows_frame, folder / "manifest.csv")
    view_manifests = {}
    for source in SOURCES:
        view_manifests[source] = folder / f"{source}.manifest.csv"
        pd.DataFrame({"id": rows_frame.id, "view": [views[j] for j in repeat], "source": source, "sample": 0}).to_csv(
            view_manifests[source], index=False
        )
    return {
        "manifest": folder / "manifest.csv",
        "rows": rows_frame,
        "views": view_manifests,
        "unique_paths": paths,
        "captions": list(train.caption),
    }


# --- models --------------------------------------------------------------------------------------------------------
def override_models(config: dict, args, folder: Path) -> list[str]:
    """Apply --tiny, --random-encoders and --models-dir to config['models']; returns notes for the rates file."""
    models, notes = config["models"], []
    if args.tiny:
        from genview.models.tiny import build_tiny_models

        build_tiny_models(folder / "tiny")
        for role in ("unclip", "text2img", "complexity_llm"):
            models[role] = (
                {**models[role], "path": str(folder / "tiny" / role), "revision": None, "variant": None}
                if role != "complexity_llm"
                else {**models[role], "path": str(folder / "tiny" / role), "trust_remote_code": False}
            )
        for role in OPEN_CLIP_ROLES:
            models[role] = {**models[role], "model": f"local-dir:{folder / 'tiny' / role}", "pretrained": None}
        models["quality_encoder"]["image_size"] = None
        notes.append("tiny random-weight stand-ins for every model (a rehearsal: not the paper's models)")
    if args.random_encoders:
        for role in OPEN_CLIP_ROLES:
            if not models[role]["model"].startswith("local-dir:"):
                models[role] = {**models[role], "pretrained": None}
        notes.append("open_clip encoders with random weights (same architecture and speed)")
    if args.models_dir:
        for role in ("unclip", "text2img", "complexity_llm", *OPEN_CLIP_ROLES):
            folder_of_role = Path(args.models_dir) / role
            if folder_of_role.is_dir():
                if role in OPEN_CLIP_ROLES:
                    models[role] = {**models[role], "model": f"local-dir:{folder_of_role}", "pretrained": None}
                else:
                    models[role] = {**models[role], "path": str(folder_of_role)}
                notes.append(f"{role} from {folder_of_role}")
    return notes


# --- generation ----------------------------------------------------------------------------------------------------
def _pipeline_call(pipeline, source: str, image, caption: str, steps: int, noise: int, guidance: float, seed: int):
    arguments = dict(
        num_inference_steps=steps, guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(seed)
    )
    if source == "tc":
        return pipeline(prompt=caption, **arguments).images[0]
    return pipeline(image=image, prompt=caption if source == "itc" else "", noise_level=noise, **arguments).images[0]


def image_step_flops(pipeline, source: str, image, caption: str, noise: int, guidance: float) -> float:
    """FLOPs of one denoising step for one image (the UNet, twice under classifier-free guidance): a 2-step call
    minus a 1-step call, both counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            _pipeline_call(pipeline, source, image, caption, steps, noise, guidance, 0)
        counts.append(counter.get_total_flops())
    return float(counts[1] - counts[0])


def measure_generation(config: dict, data: dict, args, device: str, folder: Path, report: dict) -> dict:
    from genview.generation.views import generate_shard
    from genview.models.diffusion import load_pipeline

    generation = copy.deepcopy(config["generation"])
    generation["steps"] = args.steps or generation["steps"]
    generation["batch_size"] = args.gen_batch or generation["batch_size"]
    steps = generation["steps"]
    shard = data["rows"].head(args.images)
    SHARD.write(shard, folder / "gen_shard.csv")
    # One (noise level, guidance) group: at shard scale every group fills its batches; on a few images, the 20
    # groups of adaptive ITC settings would leave padded, nearly empty batches.
    noise_levels, guidance_scales = [200], [6]
    pd.DataFrame(
        {
            "id": shard.id,
            "noise_level": [noise_levels[i % len(noise_levels)] for i in range(len(shard))],
            "guidance_scale": [guidance_scales[i % len(guidance_scales)] for i in range(len(shard))],
        }
    ).to_csv(folder / "gen_params.csv", index=False)
    peak = peak_flops(report["device"], args.peak_flops)
    rates, pipelines = {}, {}
    print(
        f"\n== generation: {steps} steps, batch {generation['batch_size']}, {len(shard)} views per source"
        f" (official-style loop: {min(args.official_images, len(shard))}), peak "
        f"{'%.0f TFLOP/s' % (peak / 1e12) if peak else 'unknown (--peak-flops)'}"
    )
    for source in args.sources:
        role = SOURCE_ROLES[source]
        if role not in pipelines:
            pipelines[role] = load_pipeline(role, config["models"][role], device)
        pipeline = pipelines[role]
        resolution = pipeline.unet.config.sample_size * pipeline.vae_scale_factor
        settings = generation[source]
        noise_of = lambda i: (
            noise_levels[i % len(noise_levels)]
            if settings.get("noise_level") == "adaptive"
            else settings.get("noise_level", 0)
        )
        guidance_of = lambda i: (
            guidance_scales[i % len(guidance_scales)]
            if settings.get("guidance_scale") == "adaptive"
            else settings["guidance_scale"]
        )
        image = load_rgb(shard.path.iloc[0])
        flops = image_step_flops(pipeline, source, image, shard.caption.iloc[0], noise_of(0), guidance_of(0))

        def ours(name):
            generate_shard(
                source=source,
                shard_csv=folder / "gen_shard.csv",
                params=pd.read_csv(folder / "gen_params.csv", dtype={"id": str}),
                views_dir=folder / f"views_{source}_{name}",
                out_manifest=folder / f"{source}_{name}.csv",
                pipeline=pipeline,
                generation=generation,
                seed=0,
            )

        def official():
            for i in range(min(args.official_images, len(shard))):
                view = _pipeline_call(
                    pipeline,
                    source,
                    load_rgb(shard.path.iloc[i]),
                    shard.caption.iloc[i],
                    steps,
                    noise_of(i),
                    guidance_of(i),
                    i,
                )
                view.resize((generation["save_size"],) * 2).save(folder / f"official_{source}_{i}.jpg")

        _pipeline_call(pipeline, source, image, shard.caption.iloc[0], 1, noise_of(0), guidance_of(0), 0)  # warm-up
        ours_rate = len(shard) / timed(lambda: ours("timed"), device)
        official_rate = min(args.official_images, len(shard)) / timed(official, device)
        limit = peak / (flops * steps) if peak and flops else None
        rates[source] = ours_rate
        report["generation"][source] = dict(
            resolution=resolution,
            images_per_second=ours_rate,
            official_images_per_second=official_rate,
            ours_over_official=ours_rate / official_rate,
            gflops_per_image_step=flops / 1e9,
            physical_limit_images_per_second=limit,
            fraction_of_limit=ours_rate / limit if limit else None,
        )
        print(
            f"  {source:3s} {resolution}px: ours {ours_rate:8.3f} img/s | official-style batch-1 {official_rate:8.3f}"
            f" img/s (ours/official {ours_rate / official_rate:.2f}x) | {flops / 1e9:.1f} GFLOP per image-step,"
            + (
                f" limit {limit:.2f} img/s, ours at {100 * ours_rate / limit:.1f}% of it"
                if limit
                else " no peak FLOP/s for this device (--peak-flops)"
            )
        )
    del pipelines
    if rates:
        combined = harmonic_mean(list(rates.values())) * steps  # one view of each source in turn
        print(f"  generation_image_steps_per_second: {combined:.2f} (harmonic mean of the sources x {steps} steps)")
        return {"generation_image_steps_per_second": combined}
    return {}


# --- encoders and chat model ---------------------------------------------------------------------------------------
def measure_foreground(config: dict, data: dict, args, device: str, report: dict) -> dict:
    from genview.models.open_clip_models import load_open_clip, patch_tokens

    spec = config["models"]["fg_encoder"]
    model, preprocess = load_open_clip(spec, device)
    batch_size = args.encoder_batch or config["analysis"]["batch_size"]
    paths = data["unique_paths"]
    decode_started = time.perf_counter()
    prepared = [preprocess(Image.open(p).convert("RGB")) for p in paths]  # serial, as the analysis job does
    decode_rate = len(paths) / (time.perf_counter() - decode_started)
    batch = torch.stack([prepared[i % len(prepared)] for i in range(batch_size)]).to(device)
    with torch.no_grad():
        patch_tokens(model, batch)
        seconds = timed(lambda: [patch_tokens(model, batch) for _ in range(args.encoder_repeats)], device)
    model_rate = batch_size * args.encoder_repeats / seconds
    job_rate = 1 / (1 / model_rate + 1 / decode_rate)  # the job decodes, then encodes, in turn
    report["foreground"] = dict(
        model=spec["model"],
        input_size=list(batch.shape[-2:]),
        batch=batch_size,
        model_images_per_second=model_rate,
        decode_images_per_second=decode_rate,
        job_images_per_second=job_rate,
    )
    print(
        f"\n== foreground encoder {spec['model']} ({batch.shape[-1]}px, batch {batch_size}, fp32 as the analysis"
        f" runs): model {model_rate:.1f} img/s, serial decode+preprocess {decode_rate:.1f} img/s -> job"
        f" {job_rate:.1f} img/s"
    )
    return {"foreground_images_per_second": job_rate}


def measure_quality(config: dict, args, device: str, report: dict) -> dict:
    from genview.quality.encoder import QualityEncoder

    spec = config["models"]["quality_encoder"]
    encoder = QualityEncoder(spec, device=device, image_size=spec.get("image_size"))
    batch_size = args.encoder_batch or config["analysis"]["batch_size"]
    views = torch.rand(batch_size, 3, args.train_image_size or 224, args.train_image_size or 224, device=device)
    encoder.features(views)
    seconds = timed(lambda: [encoder.features(views) for _ in range(args.encoder_repeats)], device)
    rate = batch_size * args.encoder_repeats / seconds
    report["quality"] = dict(
        model=spec["model"], image_size=list(encoder.image_size), batch=batch_size, images_per_second=rate
    )
    print(
        f"\n== quality encoder {spec['model']} ({encoder.image_size[0]}px, batch {batch_size}, bf16 autocast on"
        f" CUDA): {rate:.1f} views/s"
    )
    return {"quality_images_per_second": rate}


def measure_llm(config: dict, data: dict, args, device: str, report: dict) -> dict:
    from genview.analysis.complexity import llm_scores
    from genview.models.chat_llm import load_chat_model

    spec = config["models"]["complexity_llm"]
    max_new_tokens = args.max_new_tokens or spec["max_new_tokens"]
    model = load_chat_model(
        spec["path"],
        trust_remote_code=spec["trust_remote_code"],
        device=device,
        max_new_tokens=max_new_tokens,
        do_sample=spec["do_sample"],
    )
    captions = (data["captions"] * args.captions)[: args.captions]
    results = []
    seconds = timed(
        lambda: results.extend(llm_scores(captions, model.generate, config["analysis"]["llm_attempts"])), device
    )
    rate = len(captions) / seconds
    asks = [getattr(r, "attempts", None) for r in results]
    report["llm"] = dict(
        model=spec["path"],
        max_new_tokens=max_new_tokens,
        captions=len(captions),
        captions_per_second=rate,
        attempts=asks,
    )
    print(
        f"\n== complexity chat model {spec['path']} (max {max_new_tokens} new tokens): {rate:.3f} captions/s"
        f" (attempts per caption: {asks})"
    )
    return {"llm_captions_per_second": rate}


# --- pre-training --------------------------------------------------------------------------------------------------
def profile_cpus_per_gpu() -> int | None:
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    return profile.get("set-resources", {}).get("pretrain", {}).get("cpus_per_gpu")


def views_per_sample(experiment: dict, kind: str) -> int:
    if kind != "two_view":
        return experiment["views"]["n_views"]
    crop = experiment["recipe"]["multi_crop"]
    return 2 + (crop["number"] if crop else 0)


def signature(experiment: dict) -> str:
    """What sets an experiment's speed: experiments that agree on it are measured once."""
    recipe = experiment["recipe"]
    keep = {
        key: recipe[key]
        for key in ("batch_size", "image_size", "amp", "optimizer", "multi_crop", "downsample", "augmentation")
    }
    return json.dumps(
        [
            experiment["method"],
            experiment["backbone"],
            experiment["method_args"],
            keep,
            experiment["variant"],
            experiment["views"],
            experiment["gpus"],
        ],
        sort_keys=True,
    )


def quality_vector(spec: dict, folder: Path, device: str) -> Path:
    """A unit vector of the quality encoder's token width (the scorer's cost does not depend on its values)."""
    from genview.quality.encoder import QualityEncoder

    encoder = QualityEncoder(spec, device=device, image_size=spec.get("image_size"))
    width = encoder.features(torch.rand(1, 3, 64, 64, device=device))[0].shape[-1]
    vector = torch.nn.functional.normalize(torch.randn(width), dim=0).numpy()
    path = folder / f"quality_{abs(hash(json.dumps(spec, sort_keys=True)))}.npz"
    np.savez(path, vector=vector)
    return path


def measure_pretraining(experiments: dict, data: dict, args, device: str, folder: Path, report: dict) -> dict:
    from genview.methods import method_class
    from genview.training.train import Trainer

    workers = args.workers if args.workers is not None else (profile_cpus_per_gpu() or 4)
    measured, vectors, by_backbone, per_core = {}, {}, {}, {}
    print(
        f"\n== pre-training: {args.train_steps} timed steps after 2 warm-up steps, per-GPU batch, input pipeline"
        f" with {workers} loader process(es) per GPU (profiles/slurm cpus_per_gpu)"
    )
    print(
        f"  {'experiment':44s} {'backbone':10s} {'prec':5s} {'batch':>5s} {'views':>5s} {'model st/s':>10s}"
        f" {'input st/s':>10s} {'input/model':>11s} {'views/s':>9s} {'peak GiB':>8s} {'cores/GPU':>9s}"
    )
    print(
        "  (cores/GPU: loader cores one GPU needs to feed the model step, from one core's rate of the experiment's"
        " augmentation, measured by benchmarks/loader.py)"
    )
    for name, experiment in sorted(experiments.items()):
        key = signature(experiment)
        if key in measured:
            report["pretrain"][name] = {**report["pretrain"][measured[key]], "same_as": measured[key]}
            continue
        measured[key] = name
        experiment = copy.deepcopy(experiment)
        recipe = experiment["recipe"]
        recipe["batch_size"] = args.train_batch or max(1, recipe["batch_size"] // experiment["gpus"])
        if args.train_image_size:
            recipe["image_size"] = args.train_image_size
            if "image_size" in experiment["backbone"]:
                experiment["backbone"]["image_size"] = args.train_image_size
        kind = method_class(experiment["method"]).kind
        sources = experiment["views"]["sources"] if experiment["variant"] != "baseline" else []
        vector = None
        if experiment["variant"] == "genview":
            spec_key = json.dumps(experiment["quality_encoder"], sort_keys=True)
            if spec_key not in vectors:
                vectors[spec_key] = quality_vector(experiment["quality_encoder"], folder, device)
            vector = str(vectors[spec_key])
        precision = recipe["amp"] if device.startswith("cuda") and recipe["amp"] != "none" else "fp32"
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            trainer = Trainer(
                experiment,
                folder / "train" / name,
                manifest=str(data["manifest"]),
                view_manifests=[str(data["views"][s]) for s in sources],
                quality_vector=vector,
                device=device,
                execution={"num_workers": 0},
            )
            # The model's batch comes with no loader processes busy beside the timed steps.
            batch = next(iter(trainer._loader(0, 0)))
            trainer.execution["num_workers"] = workers
            last_epoch = recipe["epochs"] - 1  # GenView++ turns its quality terms on at epoch_switch
            for _ in range(2):
                trainer.step(batch, last_epoch)
            model_rate = args.train_steps / timed(
                lambda: [trainer.step(batch, last_epoch) for _ in range(args.train_steps)], device
            )
            input_rate = loader_batches_per_second(trainer._loader(0, 0), workers, args.input_rounds)
            augmentation = "device" if recipe["augment_on"] == "device" else trainer.dataset.preset
            if augmentation not in per_core:
                per_core[augmentation] = loader_views_per_core(augmentation, trainer.dataset.preset, data, recipe)
        except torch.cuda.OutOfMemoryError:
            report["pretrain"][name] = dict(error=f"out of memory at per-GPU batch {recipe['batch_size']}")
            print(f"  {name:44s} out of memory at per-GPU batch {recipe['batch_size']}")
            continue
        views = views_per_sample(experiment, kind)
        views_rate = min(model_rate, input_rate) * recipe["batch_size"] * views
        cores = model_rate * recipe["batch_size"] * views / per_core[augmentation]
        peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
        report["pretrain"][name] = dict(
            method=experiment["method"],
            variant=experiment["variant"],
            backbone=experiment["backbone"]["name"],
            precision=precision,
            per_gpu_batch=recipe["batch_size"],
            image_size=recipe["image_size"],
            views_per_sample=views,
            model_steps_per_second=model_rate,
            input_steps_per_second=input_rate,
            views_per_second=views_rate,
            loader_workers=workers,
            augmentation=augmentation,
            loader_views_per_second_per_core=per_core[augmentation],
            cores_to_feed_the_model=cores,
            peak_memory_gib=None if math.isnan(peak_gib) else peak_gib,
        )
        print(
            f"  {name[:44]:44s} {experiment['backbone']['name'][:10]:10s} {precision:5s} {recipe['batch_size']:5d}"
            f" {views:5d} {model_rate:10.3f} {input_rate:10.3f} {input_rate / model_rate:11.2f} {views_rate:9.1f}"
            f" {peak_gib:8.1f} {cores:9.1f}"
        )
        # The estimate adds the quality encoder's passes for the genview variant itself: its backbone rate comes
        # from the other variants where there are any.
        by_backbone.setdefault(experiment["backbone"]["name"], []).append((experiment["variant"], views_rate))
    rates = {}
    for backbone, values in sorted(by_backbone.items()):
        plain = [rate for variant, rate in values if variant != "genview"] or [rate for _, rate in values]
        rates[backbone] = harmonic_mean(plain)
    if per_core:
        print("  loader_views_per_second_per_core: " + ", ".join(f"{k} {v:.1f}" for k, v in per_core.items()))
    if rates:
        print(
            "  pretrain_images_per_second: "
            + ", ".join(f"{k} {v:.1f}" for k, v in rates.items())
            + " (views/s through the backbone; the slower of model and input pipeline)"
        )
    return {
        **({"pretrain_images_per_second": rates} if rates else {}),
        **({"loader_views_per_second_per_core": per_core} if per_core else {}),
    }


def loader_views_per_core(augmentation: str, preset: str, data: dict, recipe: dict) -> float:
    """Views/s one CPU core delivers for ``augmentation`` (a preset, or device: the CPU share of ``preset`` with
    augment_on: device), on the synthetic JPEGs, at the recipe's view size (benchmarks/loader.py)."""
    from loader import measure

    pipeline = "device" if augmentation == "device" else "ours"
    rates = measure([preset], data["unique_paths"], recipe["image_size"], rounds=1, pipelines=(pipeline,))
    return 2 * rates[preset][pipeline]  # two views per image


# --- evaluation ----------------------------------------------------------------------------------------------------
def measure_evaluation(config: dict, experiments: dict, data: dict, args, device: str, report: dict) -> dict:
    from genview.data.images import to_tensor
    from genview.evaluation.pretrained import (
        image_loader,
        test_transform,
        train_transform,
    )
    from genview.training.network import build_model

    workers = args.workers if args.workers is not None else (profile_cpus_per_gpu() or 4)
    evaluation = config["evaluation"]
    feature_batch = args.train_batch or evaluation["batch_size"]
    probe_batch = args.train_batch or evaluation["linear"]["batch_size"]
    by_backbone = {}
    for name, experiment in sorted(experiments.items()):
        backbone = json.dumps(experiment["backbone"], sort_keys=True)
        by_backbone.setdefault(backbone, (name, experiment, []))[2].append(name)
    print(
        f"\n== evaluation (fp32 as the protocols run; {workers} loader process(es)): feature extraction at batch"
        f" {feature_batch}, linear probe at batch {probe_batch}"
    )
    feature_rates, probe_rates, weights = [], [], []
    paths = list(data["rows"].path)
    for name, experiment, users in by_backbone.values():
        size = args.train_image_size or experiment["recipe"]["image_size"]
        if "image_size" in experiment["backbone"] and args.train_image_size:
            experiment = {**experiment, "backbone": {**experiment["backbone"], "image_size": size}}
        model = build_model(experiment).to(device).eval()
        row = {}
        for protocol, transform, batch_size in (
            ("features", test_transform(size), feature_batch),
            ("linear", train_transform(size), probe_batch),
        ):
            images = torch.stack([transform(to_tensor(load_rgb(p))) for p in data["unique_paths"][:4]])
            batch = images[torch.arange(batch_size) % len(images)].to(device)
            with torch.no_grad():
                model.backbone(batch)
                model_s = timed(lambda: [model.backbone(batch) for _ in range(args.encoder_repeats)], device)
            loader = image_loader(
                paths,
                np.zeros(len(paths), dtype=np.int64),
                transform,
                batch_size=batch_size,
                num_workers=workers,
                shuffle=protocol == "linear",
            )
            model_rate = batch_size * args.encoder_repeats / model_s
            input_rate = batch_size * loader_batches_per_second(loader, workers, args.input_rounds)
            row[protocol] = dict(
                model_images_per_second=model_rate,
                input_images_per_second=input_rate,
                images_per_second=min(model_rate, input_rate),
            )
        report["evaluation"][experiment["backbone"]["name"] + f" ({name})"] = dict(image_size=size, **row)
        features, linear = row["features"], row["linear"]
        print(
            f"  {experiment['backbone']['name']:10s} {size}px  features: model"
            f" {features['model_images_per_second']:.1f} img/s, input {features['input_images_per_second']:.1f} img/s"
            f" | linear probe: model {linear['model_images_per_second']:.1f} img/s, input"
            f" {linear['input_images_per_second']:.1f} img/s  ({len(users)} experiment(s))"
        )
        feature_rates.append(row["features"]["images_per_second"])
        probe_rates.append(row["linear"]["images_per_second"])
        weights.append(len(users))

    def weighted_harmonic(values):  # total time of one image per experiment
        return sum(weights) / sum(w / v for w, v in zip(weights, values))

    if not feature_rates:
        return {}
    return {
        "feature_images_per_second": weighted_harmonic(feature_rates),
        "linear_images_per_second": weighted_harmonic(probe_rates),
    }


# --- the run -------------------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve(args.device)
    config = load_config_files(args.config)
    software = f"torch {torch.__version__}, CUDA {torch.version.cuda or '-'}"
    report = {"device": device_name(device), "generation": {}, "pretrain": {}, "evaluation": {}}
    print(
        f"device {report['device']} ({device}); {software}; {os.cpu_count()} CPUs here;"
        f" config {' + '.join(args.config)}"
    )
    rates: dict = {}
    notes: list[str] = []
    out = Path(args.out)
    command = "python benchmarks/rates.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="genview-rates-") as tmp:
        folder = Path(tmp)
        notes += override_models(config, args, folder)
        from genview.training.experiments import resolve_experiments

        experiments = {
            name: e
            for name, e in resolve_experiments(config).items()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in args.experiments)
        }
        largest = max(
            [args.train_batch or max(1, e["recipe"]["batch_size"] // e["gpus"]) for e in experiments.values()]
            + [config["evaluation"]["batch_size"], args.images]
        )
        workers = args.workers if args.workers is not None else (profile_cpus_per_gpu() or 4)
        batches = 2 + args.input_rounds * max(workers, 1)  # what loader_batches_per_second reads, and a spare
        data = prepare_data(
            folder,
            rows=largest * batches,
            unique=args.unique_images,
            size=args.source_size,
            save_size=config["generation"]["save_size"],
        )
        phases = {
            "generation": lambda: measure_generation(config, data, args, device, folder, report),
            "foreground": lambda: measure_foreground(config, data, args, device, report),
            "quality": lambda: measure_quality(config, args, device, report),
            "llm": lambda: measure_llm(config, data, args, device, report),
            "pretrain": lambda: measure_pretraining(experiments, data, args, device, folder, report),
            "evaluation": lambda: measure_evaluation(config, experiments, data, args, device, report),
        }
        for phase in args.only:
            try:
                rates.update(phases[phase]())
            except GenviewError as error:  # e.g. a model whose weights are not here: the other phases still run
                print(f"\n== {phase}: skipped: {error}")
                notes.append(f"{phase} not measured: {str(error)[:200]}")
            document = rates_document(rates, config, report, command, software, notes)
            write(out, document, report)  # after every phase: a run cut short keeps what it measured
    print(f"\nwrote {out} (details: {out.with_suffix('.details.json')})")
    return document


def rates_document(rates: dict, config: dict, report: dict, command: str, software: str, notes: list[str]) -> dict:
    """The rates in the config's estimate.rates format, with estimate.rates_from; validated as the estimate will."""
    measured = [
        f"{key}.{k}" if isinstance(value, dict) else key
        for key, value in rates.items()
        for k in (value if isinstance(value, dict) else [None])
    ]
    rounded = {
        key: ({k: float(f"{v:.4g}") for k, v in value.items()} if isinstance(value, dict) else float(f"{value:.4g}"))
        for key, value in rates.items()
    }
    for key, value in rounded.items():  # the backbones (augmentations) not measured keep the config's rates
        if isinstance(value, dict):
            rounded[key] = {**config["estimate"]["rates"][key], **value}
    rates_from = {
        "device": report["device"],
        "date": datetime.date.today().isoformat(),
        "command": command,
        "software": software,
        "measured": measured,
    }
    if notes:
        rates_from["notes"] = "; ".join(notes)
    document = {"estimate": {"rates": rounded, "rates_from": rates_from}}
    validate_config(copy.deepcopy(document), source="the rates written")
    return document


def write(out: Path, document: dict, report: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Per-GPU rates measured by benchmarks/rates.py on {report['device']}.\n"
        f"# Use: genview config estimate CONFIG {out}\n" + yaml.safe_dump(document, sort_keys=False)
    )
    out.with_suffix(".details.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
