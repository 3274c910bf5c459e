"""``genview models build-tiny``."""

from __future__ import annotations


def _build_tiny(args) -> None:
    from genview.models.tiny import build_tiny_models

    build_tiny_models(args.out_dir, image_size=args.image_size)


def register(stages) -> None:
    stage = stages.add_parser("models", help="pretrained models by role")
    commands = stage.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("build-tiny", help="write tiny random-weight stand-ins for every role (offline)")
    tiny.add_argument("--out-dir", default="results/models/tiny")
    tiny.add_argument("--image-size", type=int, default=32, help="native image size of the tiny diffusion pipelines")
    tiny.set_defaults(run=_build_tiny)
