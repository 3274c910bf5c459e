"""Images verified per second by `genview data index`, with 1 and N worker processes, measured side by side.

    python benchmarks/index_speed.py [--images 800] [--size 400x350] [--workers 2] [--smoke]

Writes ImageNet-sized JPEGs (random smooth content, quality 90) into a temporary image folder, indexes it with each
worker count (fresh verification cache each time) and prints images/s and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from genview.config.load import validate_config
from genview.data.index import index_dataset


def write_images(root: Path, count: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / "train" / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 255, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize(size, Image.BILINEAR).save(folder / f"{i:06d}.jpg", quality=90)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--size", default="400x350")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="the smallest run (8 small images)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.size = 8, "64x48"
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_images(root, args.images, size)
        spec = validate_config({"datasets": {"bench": {"kind": "imagefolder", "root": str(root)}}})["datasets"]["bench"]
        rates = {}
        for workers in (1, args.workers):
            started = time.perf_counter()
            index_dataset("bench", spec, Path(tmp) / f"out{workers}", workers=workers)
            rates[workers] = args.images / (time.perf_counter() - started)
    print(f"{args.images} JPEGs of {size[0]}x{size[1]}")
    for workers, rate in rates.items():
        print(f"  {workers} worker(s): {rate:8.0f} images/s")
    print(f"  speed-up {args.workers} vs 1 worker: {rates[args.workers] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
