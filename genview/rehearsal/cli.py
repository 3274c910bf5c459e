"""``genview rehearsal build``: the dress rehearsal's models (rule build_rehearsal_models)."""

from __future__ import annotations


def _build(args) -> None:
    import torch

    from genview.rehearsal.build import build_rehearsal_models

    # The full-size models are built where they will run: on the leased GPU when there is one (genview --gpus).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = dict(item.split("=", 1) for item in args.variant)
    build_rehearsal_models(args.out_dir, args.size, device=device, variants=variants)


def register(stages) -> None:
    commands = stages.add_parser("rehearsal", help="the dress rehearsal's random-weight models").add_subparsers(
        dest="command", required=True
    )
    rehearsal = commands.add_parser(
        "build",
        help="write every role at its real architecture (random weights) from config/model_configs (offline)",
    )
    rehearsal.add_argument(
        "--size",
        choices=("full", "small"),
        required=True,
        help="full: the published configurations; small: config/model_configs/small.yaml",
    )
    rehearsal.add_argument("--out-dir", required=True)
    rehearsal.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="ROLE=VARIANT",
        help="save a diffusion pipeline as this weights variant (e.g. unclip=fp16)",
    )
    rehearsal.set_defaults(run=_build)
