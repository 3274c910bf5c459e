"""``genview evaluate features | run``."""

from __future__ import annotations

from pathlib import Path

from genview.cli import json_argument


def _features(args) -> None:
    from genview.devices import out_of_memory_advice, resolve_device
    from genview.evaluation.features import extract_features

    device = resolve_device(args.device)
    with out_of_memory_advice("evaluate features (rule extract_features)", batch_size=args.batch_size,
                              lower="evaluation.batch_size", device=device):
        extract_features(args.checkpoint, args.manifest, args.dataset, json_argument(args.spec, "--spec"), args.out,
                         batch_size=args.batch_size, num_workers=args.num_workers, device=device)


def _run(args) -> None:
    from genview.devices import out_of_memory_advice, resolve_device
    from genview.evaluation.protocols import EvalContext, evaluate

    context = EvalContext(
        experiment_name=args.experiment, checkpoint=Path(args.checkpoint), dataset=args.dataset,
        spec=json_argument(args.spec, "--spec"), features_npz=Path(args.features), settings=json_argument(args.settings, "--settings"),
        seed=args.seed, device=resolve_device(args.device), num_workers=args.num_workers,
    )
    batch_size = context.settings.get("batch_size", "(features in chunks)")
    with out_of_memory_advice(f"evaluate run {args.protocol} (rule evaluate)", batch_size=batch_size,
                              lower=f"evaluation.{args.protocol}.batch_size (or the run's settings.{args.protocol})",
                              device=context.device):
        evaluate(args.protocol, context, args.out)


def register(stages) -> None:
    stage = stages.add_parser("evaluate", help="evaluation of pre-trained experiments")
    commands = stage.add_subparsers(dest="command", required=True)

    features = commands.add_parser("features", help="cache backbone features of every split of a dataset")
    for option in ("--checkpoint", "--manifest", "--dataset", "--spec", "--out"):
        features.add_argument(option, required=True)
    features.add_argument("--batch-size", type=int, default=256)
    run = commands.add_parser("run", help="run one protocol on one dataset for one experiment")
    for option in ("--protocol", "--experiment", "--checkpoint", "--dataset", "--spec", "--features", "--settings",
                   "--out"):
        run.add_argument(option, required=True)
    run.add_argument("--seed", type=int, default=0)
    for parser in (features, run):
        parser.add_argument("--device", default="auto")
        parser.add_argument("--num-workers", type=int, default=4, help="image loading processes")
    features.set_defaults(run=_features)
    run.set_defaults(run=_run)
