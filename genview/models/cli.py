"""``genview models build-tiny | build-rehearsal``."""

from __future__ import annotations


def _build_tiny(args) -> None:
    from genview.models.tiny import build_tiny_models

    build_tiny_models(args.out_dir, image_size=args.image_size)


def _build_rehearsal(args) -> None:
    import torch

    from genview.models.rehearsal import build_rehearsal_models

    # The full-size models are built where they will run: on the leased GPU when there is one (genview --gpus).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = {role: variant for role, variant in (item.split("=", 1) for item in args.variant)}
    build_rehearsal_models(args.out_dir, args.size, device=device, variants=variants)


def register(stages) -> None:
    stage = stages.add_parser("models", help="pretrained models by role")
    commands = stage.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("build-tiny", help="write tiny random-weight stand-ins for every role (offline)")
    tiny.add_argument("--out-dir", default="results/models/tiny")
    tiny.add_argument("--image-size", type=int, default=32, help="native image size of the tiny diffusion pipelines")
    tiny.set_defaults(run=_build_tiny)
    rehearsal = commands.add_parser(
        "build-rehearsal",
        help="write every role at its real architecture (random weights) from config/model_configs (offline)",
    )
    rehearsal.add_argument("--size", choices=("full", "small"), required=True,
                           help="full: the published configurations; small: config/model_configs/small.yaml")
    rehearsal.add_argument("--out-dir", required=True)
    rehearsal.add_argument("--variant", action="append", default=[], metavar="ROLE=VARIANT",
                           help="save a diffusion pipeline as this weights variant (e.g. unclip=fp16)")
    rehearsal.set_defaults(run=_build_rehearsal)
