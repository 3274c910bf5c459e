"""``genview evaluation cached | run``."""

from __future__ import annotations

from pathlib import Path

from genview.cli_args import json_argument


def _cached(args) -> None:
    """Features of every split, then every protocol that reads them, in one process; one JSON for their results."""
    from genview.evaluation.features import extract_features
    from genview.evaluation.protocols import EvalContext, evaluation_record, write_json
    from genview.runtime.devices import out_of_memory_advice, resolve_device

    device = resolve_device(args.device)
    spec = json_argument(args.spec, "--spec")
    with out_of_memory_advice(
        "evaluation cached (rule evaluate_cached)",
        batch_size=args.batch_size,
        device=device,
        lower="evaluation.batch_size (images per feature batch)",
    ):
        extract_features(
            args.checkpoint,
            args.manifest,
            args.dataset,
            spec,
            args.features,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=device,
        )
    results = {}
    for protocol, settings in json_argument(args.protocols, "--protocols").items():
        context = EvalContext(
            experiment_name=args.experiment,
            checkpoint=Path(args.checkpoint),
            dataset=args.dataset,
            spec=spec,
            features_npz=Path(args.features),
            settings=settings,
            seed=args.seed,
            device=device,
            num_workers=args.num_workers,
        )
        results[protocol] = evaluation_record(protocol, context)
    write_json(results, args.out)


def _run(args) -> None:
    from genview.evaluation.protocols import EvalContext, evaluate
    from genview.runtime.devices import out_of_memory_advice, resolve_device

    context = EvalContext(
        experiment_name=args.experiment,
        checkpoint=Path(args.checkpoint),
        dataset=args.dataset,
        spec=json_argument(args.spec, "--spec"),
        features_npz=Path(args.features),
        settings=json_argument(args.settings, "--settings"),
        seed=args.seed,
        device=resolve_device(args.device),
        num_workers=args.num_workers,
    )
    batch_size = context.settings.get("batch_size", "(features in chunks)")
    with out_of_memory_advice(
        f"evaluation run {args.protocol} (rule evaluate)",
        batch_size=batch_size,
        lower=f"evaluation.{args.protocol}.batch_size (or the run's settings.{args.protocol})",
        device=context.device,
    ):
        evaluate(args.protocol, context, args.out)


def register(stages) -> None:
    stage = stages.add_parser("evaluation", help="evaluation of pre-trained experiments")
    commands = stage.add_subparsers(dest="command", required=True)

    cached = commands.add_parser(
        "cached",
        help="cache the features of a dataset and run the protocols that read "
        "only them (linear_fast, knn, zeroshot, retrieval), in one process",
    )
    for option in ("--checkpoint", "--manifest", "--dataset", "--experiment", "--spec", "--features", "--out"):
        cached.add_argument(option, required=True)
    cached.add_argument("--protocols", default="{}", help="JSON: protocol -> its settings")
    cached.add_argument("--batch-size", type=int, default=256)
    cached.add_argument("--seed", type=int, default=0)
    cached.add_argument("--device", default="auto")
    cached.add_argument("--num-workers", type=int, default=4, help="image loading processes")
    cached.set_defaults(run=_cached)
    run = commands.add_parser("run", help="run one protocol on one dataset for one experiment")
    for option in (
        "--protocol",
        "--experiment",
        "--checkpoint",
        "--dataset",
        "--spec",
        "--features",
        "--settings",
        "--out",
    ):
        run.add_argument(option, required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto")
    run.add_argument("--num-workers", type=int, default=4, help="image loading processes")
    run.set_defaults(run=_run)
