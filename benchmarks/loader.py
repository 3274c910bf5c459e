"""Pre-training input pipeline speed per CPU core, for every augmentation preset, measured side by side in one run:

  before    our previous pipeline: torchvision v2 transforms on float tensors (a 23-tap tensor blur at 224 px)
  ours      genview's loader (genview.training.data): draws first, JPEG draft decoding where the crops allow,
            one PIL call per crop, colour on the 8-bit crop, PIL blur, 8-bit views out
  device    the same loader with `augment_on: device`: its CPU share only (decode, crop, flip); colour runs on the GPU
  official  official style: torchvision transforms on PIL images, PIL GaussianBlur (MoCo v2 / StableRep), ToTensor
            and Normalize per view
  decode    decoding alone

    python benchmarks/loader.py [--images 64] [--size 500x375] [--image-size 224] [--rounds 3]
                                [--presets simclr byol ...] [--feed 1200 3000] [--device cuda] [--batch 256]
                                [--smoke]

One process with one torch thread: images per second of CPU time (per core), each image giving two views (the two
slots of the preset). The pipelines take turns over --rounds rounds (the best round counts), so a machine shared with
other work slows them alike; read the ratios. Then the CPU cores per GPU each pipeline needs to feed a GPU at --feed
views/s (default: the config's estimate.rates.pretrain_images_per_second). Last, the device share of `augment_on:
device`: views/s of the batched colour steps on --device (default: the GPU where there is one, else the CPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms
from torchvision.transforms import v2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from genview.config.load import validate_config  # noqa: E402
from genview.data.images import CLIP_MEAN, CLIP_STD, load_rgb  # noqa: E402
from genview.training.augment import (  # noqa: E402
    AUGMENTATIONS,
    BLUR_SIGMA,
    DOWNSAMPLE_SIZES,
    ViewPipeline,
    blur_kernel,
    color_on_device,
)
from genview.training.data import PretrainDataset  # noqa: E402

PIPELINES = ("before", "ours", "device", "official", "decode")


def write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[str]:
    """Photo-like JPEGs (smooth colour fields with fine noise, quality 90) of ``size``."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
        paths.append(str(folder / f"{i}.jpg"))
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


# --- the pipelines -------------------------------------------------------------------------------------------------
def ours(preset: str, image_size: int, paths: list[str], augment_on: str):
    rows = pd.DataFrame({"id": [str(i) for i in range(len(paths))], "path": paths, "caption": "", "label": 0})
    dataset = PretrainDataset(
        rows,
        mode="two_view",
        augmentation_preset=preset,
        image_size=image_size,
        min_scale=0.08,
        seed=0,
        augment_on=augment_on,
    )
    dataset._cache_bytes = float("inf")  # every image decoded each time, as in a dataset of ImageNet's size
    return lambda index, path: dataset[index]


class _DownSampleAndUpsample(torch.nn.Module):
    """The previous pipeline's resolution augmentation on tensors (before crop)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, image):
        if float(torch.rand(())) >= self.p:
            return image
        side = DOWNSAMPLE_SIZES[int(torch.randint(len(DOWNSAMPLE_SIZES), ()))]
        small = v2.functional.resize(image, [side, side], antialias=True)
        return v2.functional.resize(small, list(image.shape[-2:]), antialias=True)


def before(preset: str, image_size: int):
    """Our previous pipeline: decode, float tensor, v2 transforms (kept here only to measure against)."""
    recipe = AUGMENTATIONS[preset]

    def slot_pipeline(slot):
        steps = [_DownSampleAndUpsample(recipe["downsample"])] if recipe["downsample"] else []
        steps += [v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip()]
        if any(recipe["jitter"]):
            steps.append(v2.RandomApply([v2.ColorJitter(*recipe["jitter"])], p=0.8))
        steps.append(v2.RandomGrayscale(p=0.2))
        if recipe["blur"][slot]:
            kernel = blur_kernel(image_size)
            steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=BLUR_SIGMA)], p=recipe["blur"][slot]))
        if recipe["solarize"][slot]:
            steps.append(v2.RandomSolarize(0.5, p=recipe["solarize"][slot]))
        return v2.Compose(steps)

    slots = [slot_pipeline(0), slot_pipeline(1)]

    def sample(index, path):
        image = v2.functional.to_dtype(v2.functional.to_image(load_rgb(path)), torch.float32, scale=True)
        return slots[0](image), slots[1](image)

    return sample


class _PILBlur:
    def __init__(self, sigma):
        self.sigma = sigma

    def __call__(self, image):
        return image.filter(ImageFilter.GaussianBlur(float(np.random.uniform(*self.sigma))))


class _PILDownSampleAndUpsample:
    def __init__(self, p):
        self.p = p

    def __call__(self, image):
        if np.random.random() >= self.p:
            return image
        side = int(np.random.choice(DOWNSAMPLE_SIZES))
        return image.resize((side, side), Image.BILINEAR).resize(image.size, Image.BILINEAR)


def official(preset: str, image_size: int):
    """Official style: torchvision transforms on the PIL image, PIL blur, per-view ToTensor and Normalize."""
    recipe = AUGMENTATIONS[preset]

    def slot_pipeline(slot):
        steps = [_PILDownSampleAndUpsample(recipe["downsample"])] if recipe["downsample"] else []
        steps.append(transforms.RandomResizedCrop(image_size, scale=(0.08, 1.0)))
        if any(recipe["jitter"]):
            steps.append(transforms.RandomApply([transforms.ColorJitter(*recipe["jitter"])], p=0.8))
        steps.append(transforms.RandomGrayscale(p=0.2))
        if recipe["blur"][slot]:
            steps.append(transforms.RandomApply([_PILBlur(BLUR_SIGMA)], p=recipe["blur"][slot]))
        if recipe["solarize"][slot]:
            steps.append(transforms.RandomApply([ImageOps.solarize], p=recipe["solarize"][slot]))
        steps += [transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)]
        return transforms.Compose(steps)

    slots = [slot_pipeline(0), slot_pipeline(1)]

    def sample(index, path):
        image = Image.open(path).convert("RGB")
        return slots[0](image), slots[1](image)

    return sample


def build(pipeline: str, preset: str, image_size: int, paths: list[str]):
    if pipeline in ("ours", "device"):
        return ours(preset, image_size, paths, "device" if pipeline == "device" else "cpu")
    if pipeline == "before":
        return before(preset, image_size)
    if pipeline == "official":
        return official(preset, image_size)
    return lambda index, path: load_rgb(path)


# --- measuring -----------------------------------------------------------------------------------------------------
def images_per_second(sample, paths: list[str]) -> float:
    """Images per second of this process's CPU time: per core, and little affected by other work on the machine."""
    started = time.process_time()
    for index, path in enumerate(paths):
        sample(index, path)
    return len(paths) / (time.process_time() - started)


def measure(presets: list[str], paths: list[str], image_size: int, rounds: int, pipelines=PIPELINES) -> dict:
    """{preset: {pipeline: images/s on one core}} (decode once, under the key "decode" of every preset): the
    pipelines take turns, the best of ``rounds`` counts; one torch thread meanwhile."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(presets, paths, image_size, rounds, pipelines)
    finally:
        torch.set_num_threads(threads)


def _measure(presets, paths, image_size, rounds, pipelines) -> dict:
    built = {
        (preset, pipeline): build(pipeline, preset, image_size, paths)
        for preset in presets
        for pipeline in pipelines
        if pipeline != "decode" or preset == presets[0]
    }
    for sample in built.values():  # warm-up: first calls, imports, caches of torchvision
        sample(0, paths[0])
    best: dict = {}
    for _ in range(rounds):
        for key, sample in built.items():
            best[key] = max(best.get(key, 0.0), images_per_second(sample, paths))
    return {
        preset: {
            pipeline: best[(preset, pipeline)] if pipeline != "decode" else best[(presets[0], "decode")]
            for pipeline in pipelines
        }
        for preset in presets
    }


def cores_needed(views_per_second: float, images_per_core: float, views_per_image: int = 2) -> float:
    """CPU cores (loader processes) per GPU to deliver ``views_per_second`` from a per-core rate of images."""
    return views_per_second / (images_per_core * views_per_image)


def device_views_per_second(preset: str, image_size: int, batch: int, device: str, repeats: int) -> float:
    """Views/s of the colour steps of ``preset`` (slot 0) on ``device``, on batches of ``batch`` views."""
    pipeline = ViewPipeline(preset, image_size, 0.08)
    torch.manual_seed(0)
    rows = torch.tensor([pipeline.draw(500, 375).color_row() for _ in range(batch)], device=device)
    views = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, device=device)
    color_on_device(views.float() / 255, rows, image_size)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        color_on_device(views.float() / 255, rows, image_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - started)


def default_feed() -> dict[str, float]:
    return validate_config({})["estimate"]["rates"]["pretrain_images_per_second"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="distinct JPEGs, each decoded and augmented per round")
    parser.add_argument("--size", default="500x375", help="source JPEG size, WxH (an average ImageNet photo)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", nargs="+", choices=list(AUGMENTATIONS), default=list(AUGMENTATIONS))
    parser.add_argument("--feed", nargs="+", type=float, help="GPU views/s to feed (default: the config's rates)")
    parser.add_argument("--device", help="where to time the colour steps of augment_on: device (default: cuda if any)")
    parser.add_argument("--batch", type=int, default=256, help="views per batch on the device")
    parser.add_argument("--smoke", action="store_true", help="the smallest run (4 small images, 1 round, 2 presets)")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        args.images, args.size, args.image_size, args.rounds, args.batch = 4, "160x120", 64, 1, 8
        args.presets = args.presets if len(args.presets) < len(AUGMENTATIONS) else ["simclr", "genviewpp"]
    size = tuple(int(v) for v in args.size.split("x"))
    feed = (
        {f"{v:g} views/s": v for v in args.feed}
        if args.feed
        else {f"{k} {v:g} views/s": v for k, v in default_feed().items() if k in ("resnet50", "vit_base")}
    )
    with tempfile.TemporaryDirectory(prefix="genview-loader-") as tmp:
        paths = write_jpegs(Path(tmp), args.images, size)
        rates = measure(args.presets, paths, args.image_size, args.rounds)
    print(
        f"{args.images} JPEGs of {size[0]}x{size[1]} -> two {args.image_size} px views each; one process, one torch"
        f" thread; CPU time; best of {args.rounds} round(s), pipelines in turn"
    )
    print(f"\nimages/s per core (decode alone: {rates[args.presets[0]]['decode']:.0f})")
    header = f"  {'preset':10s}" + "".join(f"{p:>10s}" for p in PIPELINES[:-1])
    print(header + f"{'ours/official':>15s}{'ours/before':>13s}{'device/official':>17s}")
    for preset, row in rates.items():
        print(
            f"  {preset:10s}"
            + "".join(f"{row[p]:10.1f}" for p in PIPELINES[:-1])
            + f"{row['ours'] / row['official']:14.2f}x{row['ours'] / row['before']:12.2f}x"
            + f"{row['device'] / row['official']:16.2f}x"
        )
    print("\nCPU cores per GPU to feed it (two views per image; loader processes, one core each)")
    print(f"  {'preset':10s} {'feed':>26s}" + "".join(f"{p:>10s}" for p in PIPELINES[:-1]))
    for preset, row in rates.items():
        for label, views in feed.items():
            print(
                f"  {preset:10s} {label:>26s}" + "".join(f"{cores_needed(views, row[p]):10.1f}" for p in PIPELINES[:-1])
            )
    print(f"\ncolour steps of augment_on: device on {args.device}, batches of {args.batch} views")
    for preset in args.presets:
        rate = device_views_per_second(preset, args.image_size, args.batch, args.device, repeats=1 if args.smoke else 5)
        print(f"  {preset:10s} {rate:10.0f} views/s")
    return rates


if __name__ == "__main__":
    main()
