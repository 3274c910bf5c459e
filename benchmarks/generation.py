"""View generation throughput on one tiny unCLIP pipeline and the same images, measured side by side:

  ours      genview's shard generator (grouped by settings, batched, padded, per-image generators, JPEGs written)
  official  an official-style loop: one image per pipeline call, in file order
  bare      one bare batched pipeline call per batch (no loading, no saving): the ceiling for batching

    python benchmarks/generation.py [--images 64] [--batch-size 16] [--steps 4] [--device cpu|cuda] [--smoke]

Prints images/s and the ratios ours/official and ours/bare. A second "ours" line uses the adaptive settings of a
real shard (five noise levels, so five groups) instead of one setting for every image.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from genview.config.load import validate_config
from genview.data.images import load_rgb
from genview.data.index import index_dataset
from genview.data.shapes import make_shapes
from genview.generation.views import generate_shard
from genview.models.diffusion import build_tiny_pipeline, load_pipeline


def prepare(folder: Path, images: int) -> pd.DataFrame:
    per_class = -(-images // 12)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        make_shapes("results/datasets/bench", train_per_class=per_class, test_per_class=1)
        spec = validate_config({"datasets": {"bench": {"kind": "shapes"}}})["datasets"]["bench"]
        manifest = index_dataset("bench", spec, "results/data/bench")
    finally:
        os.chdir(cwd)
    shard = manifest[manifest.split == "train"].head(images).copy()
    shard["path"] = [str(folder / p) for p in shard.path]
    return shard


def timed(function, device: str) -> float:
    started = time.perf_counter()
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="the smallest run (4 images, 1 step): checks it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.batch_size, args.steps = 4, 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shard = prepare(folder, args.images)
        shard.to_csv(folder / "shard.csv", index=False)
        build_tiny_pipeline("unclip", folder / "unclip")
        pipeline = load_pipeline("unclip", {"path": str(folder / "unclip")}, args.device)
        generation = validate_config(
            {
                "generation": {
                    "steps": args.steps,
                    "batch_size": args.batch_size,
                    "save_size": 64,
                    "ic": {"guidance_scale": 10, "noise_level": 100},
                }
            }
        )["generation"]
        adaptive_params = pd.DataFrame({"id": shard.id, "noise_level": [(i % 5) * 100 for i in range(len(shard))]})
        adaptive_params.to_csv(folder / "params.csv", index=False)
        images = [load_rgb(p) for p in shard.path]

        def ours(name, settings, params):
            generate_shard(
                source="ic",
                shard_csv=folder / "shard.csv",
                params=pd.read_csv(params, dtype={"id": str}) if params else None,  # None: the fixed setting
                views_dir=folder / name,
                out_manifest=folder / f"{name}.csv",
                pipeline=pipeline,
                generation=settings,
                seed=0,
            )

        def official():
            for i, path in enumerate(shard.path):
                generator = torch.Generator().manual_seed(i)
                pipeline(
                    load_rgb(path),
                    num_inference_steps=args.steps,
                    guidance_scale=10,
                    noise_level=100,
                    generator=generator,
                ).images[0].resize((64, 64)).save(folder / f"official_{i}.jpg")

        def bare():
            for start in range(0, len(images), args.batch_size):
                batch = images[start : start + args.batch_size]
                pipeline(
                    image=batch,
                    prompt=[""] * len(batch),
                    num_inference_steps=args.steps,
                    guidance_scale=10,
                    noise_level=100,
                    generator=[torch.Generator().manual_seed(i) for i in range(len(batch))],
                )

        ours("warmup", generation, None)
        seconds = {
            "ours": timed(lambda: ours("ours", generation, None), args.device),
            "official": timed(official, args.device),
            "bare": timed(bare, args.device),
            "ours, adaptive settings": timed(
                lambda: ours(
                    "adaptive",
                    {**generation, "ic": {"guidance_scale": 10, "noise_level": "adaptive"}},
                    folder / "params.csv",
                ),
                args.device,
            ),
        }
    count = len(shard)
    print(
        f"{count} images, tiny unCLIP, {args.steps} steps, batch {args.batch_size}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, value in seconds.items():
        print(f"  {name:24s} {count / value:7.2f} images/s")
    print(f"  ours / official: {seconds['official'] / seconds['ours']:.2f}x   (goal >= 3x)")
    print(f"  ours / bare:     {seconds['bare'] / seconds['ours']:.2f}x   (goal >= 0.9x)")


if __name__ == "__main__":
    main()
