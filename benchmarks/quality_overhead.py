"""Cost of GenView's quality weights in a training step, measured side by side in one run:

  step      one SimCLR training step without quality weights (forward, backward, optimiser)
  weighted  the same step with the per-sample quality weights of the frozen encoder
  encoder   the frozen encoder's own forward on the step's two views (the part no implementation can avoid)

    python benchmarks/quality_overhead.py [--batch 64] [--image-size 32] [--backbone vit|resnet50]
                                          [--encoder-size 64] [--repeats 10] [--device cpu|cuda] [--smoke]

Prints weighted/step - 1 (our overhead) beside encoder/step (the inherent ratio); the goal is overhead <= inherent
+ 0.05, i.e. the masks, pooling and weights cost at most 5 % of a step on top of the encoder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genview.config.load import validate_config
from genview.models.open_clip_models import build_tiny_quality_encoder
from genview.quality.encoder import QualityEncoder, QualityScorer
from genview.training.experiments import resolve_experiments
from genview.training.network import build_model
from genview.training.train import build_optimizer

BACKBONES = {
    "vit": {"name": "vit", "patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4},
    "resnet50": {"name": "resnet50"},
}


def experiment(batch: int, image_size: int, backbone: str) -> dict:
    config = validate_config(
        {
            "datasets": {"s": {"kind": "shapes"}},
            "pretrain": {
                "recipes": {"r": {"epochs": 1, "batch_size": batch, "image_size": image_size}},
                "backbones": {"b": {**BACKBONES[backbone], "image_size": image_size}},
                "experiments": {
                    "e": {
                        "method": "simclr",
                        "variant": "baseline",
                        "recipe": "r",
                        "backbone": "b",
                        "dataset": "s",
                        "method_args": {"simclr": {"proj_hidden_dim": 256, "proj_dim": 64}},
                    }
                },
            },
        }
    )
    return resolve_experiments(config)["e"]


def median_seconds(function, repeats: int, device: str) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="vit")
    parser.add_argument("--encoder-size", type=int, default=64, help="input side of the tiny quality encoder")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true", help="the smallest run (batch 4, 16 px, 1 repeat)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.image_size, args.encoder_size, args.repeats = 4, 16, 32, 1
    device = args.device
    torch.manual_seed(0)
    exp = experiment(args.batch, args.image_size, args.backbone)
    model = build_model(exp).to(device)
    optimizer = build_optimizer(model, exp["recipe"])
    with tempfile.TemporaryDirectory() as tmp:
        encoder_dir = build_tiny_quality_encoder(Path(tmp) / "encoder")
        spec = {"model": f"local-dir:{encoder_dir}", "pretrained": None}
        # A random unit PC-1 vector of the encoder's token width: the cost does not depend on its direction.
        width = QualityEncoder(spec, device=device).features(torch.rand(1, 3, 64, 64))[0].shape[-1]
        grid = args.encoder_size // 32
        vector = np.random.default_rng(0).standard_normal(width).astype(np.float32)
        np.savez(Path(tmp) / "vector.npz", vector=vector / np.linalg.norm(vector), sign=1, grid=(grid, grid))
        scorer = QualityScorer(spec, Path(tmp) / "vector.npz", device=device, image_size=args.encoder_size)
        view1, view2 = torch.rand(2, args.batch, 3, args.image_size, args.image_size, device=device)

        def step(weights=None):
            optimizer.zero_grad(set_to_none=True)
            per_sample = model(view1, view2)
            loss = (per_sample if weights is None else weights * per_sample).mean()
            loss.backward()
            optimizer.step()

        seconds = {
            "step": median_seconds(step, args.repeats, device),
            "weighted": median_seconds(lambda: step(scorer.two_view_weights(view1, view2)), args.repeats, device),
            "encoder": median_seconds(
                lambda: scorer._encode(torch.cat([scorer._prepare(view1), scorer._prepare(view2)])),
                args.repeats,
                device,
            ),
        }
    overhead = seconds["weighted"] / seconds["step"] - 1
    inherent = seconds["encoder"] / seconds["step"]
    print(
        f"SimCLR step, {args.backbone} at {args.image_size} px, batch {args.batch}; tiny ConvNeXt quality encoder "
        f"at {args.encoder_size} px; device {device}; torch threads {torch.get_num_threads()}; medians of "
        f"{args.repeats}"
    )
    for name, value in seconds.items():
        print(f"  {name:9s} {value * 1000:8.1f} ms")
    print(f"  overhead weighted/step - 1: {overhead:.3f}")
    print(f"  inherent encoder/step:      {inherent:.3f}")
    print(f"  overhead - inherent:        {overhead - inherent:+.3f}   (goal <= +0.05)")


if __name__ == "__main__":
    main()
