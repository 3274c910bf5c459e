"""`linear_fast` (ours: logistic regression on cached features) vs `linear` (the paper's ten SGD heads on augmented
images through the frozen backbone), on the same experiment and dataset, measured side by side.

    python benchmarks/linear_probe.py [--experiment shapes_simclr_baseline_s0] [--dataset shapes] [--linear-epochs 90]
                                      [--smoke]

Needs the experiment's checkpoint and feature cache (run the embedded default first: `make run`). Prints each
protocol's wall time and top-1, the speed ratio and the accuracy difference (goal: >= 10x faster within 1 point).
--smoke makes its own in a scratch folder (6 images per class, the random initialisation, 1 linear epoch): it
checks that the benchmark runs, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from genview.config.load import load_config
from genview.evaluation.protocols import EvalContext, evaluate


def prepare_smoke(config: dict, experiment: str, dataset: str) -> None:
    """The dataset, checkpoint (the random initialisation: epochs 0) and feature cache, under the working folder."""
    from genview.data.index import index_dataset
    from genview.data.shapes import make_shapes
    from genview.evaluation.features import extract_features
    from genview.training.experiments import resolve_experiments
    from genview.training.train import train

    spec = config["datasets"][dataset]
    make_shapes(f"results/datasets/{dataset}", image_size=spec["image_size"], train_per_class=6, test_per_class=2)
    index_dataset(dataset, spec, f"results/data/{dataset}")
    resolved = resolve_experiments(config)[experiment]
    resolved["recipe"].update(epochs=0, batch_size=8)  # no step: the checkpoint of the random initialisation
    manifest = f"results/data/{dataset}/manifest.csv"
    train(
        resolved, f"results/pretrain/{experiment}", manifest=manifest, view_manifests=[], execution={"num_workers": 0}
    )
    extract_features(
        f"results/pretrain/{experiment}/checkpoint.pt",
        manifest,
        dataset,
        spec,
        f"results/eval/{experiment}/features/{dataset}.npz",
        num_workers=0,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="shapes_simclr_baseline_s0")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--linear-epochs", type=int, default=90)
    parser.add_argument(
        "--smoke", action="store_true", help="make a tiny checkpoint and cache first, in a scratch folder"
    )
    args = parser.parse_args(argv)
    config = load_config(args.config)
    with contextlib.ExitStack() as stack:
        if args.smoke:
            args.linear_epochs = 1
            stack.enter_context(contextlib.chdir(stack.enter_context(tempfile.TemporaryDirectory())))
            prepare_smoke(config, args.experiment, args.dataset)
        measure(args, config)


def measure(args, config: dict) -> None:
    spec = {**config["datasets"], **config["eval_datasets"]}[args.dataset]
    settings = {
        "linear": {**config["evaluation"]["linear"], "epochs": args.linear_epochs},
        "linear_fast": config["evaluation"]["linear_fast"],
    }
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in ("linear_fast", "linear"):
            context = EvalContext(
                experiment_name=args.experiment,
                checkpoint=Path(f"results/pretrain/{args.experiment}/checkpoint.pt"),
                dataset=args.dataset,
                spec=spec,
                features_npz=Path(f"results/eval/{args.experiment}/features/{args.dataset}.npz"),
                settings=settings[protocol],
                seed=config["seed"],
                device="cpu",
                num_workers=0,
            )
            started = time.perf_counter()
            results[protocol] = evaluate(protocol, context, Path(tmp) / f"{protocol}.json")["metrics"]
            seconds[protocol] = time.perf_counter() - started
    print(f"{args.experiment} on {args.dataset} (linear: {args.linear_epochs} epochs, ten heads)")
    for protocol in results:
        print(f"  {protocol:12s} {seconds[protocol]:7.2f} s   top-1 {results[protocol]['top1']:6.2f}")
    print(f"  speed ratio linear / linear_fast: {seconds['linear'] / seconds['linear_fast']:.1f}x   (goal >= 10x)")
    print(
        f"  top-1 linear_fast - linear: {results['linear_fast']['top1'] - results['linear']['top1']:+.2f} points"
        "   (goal within 1)"
    )
    print(json.dumps({"seconds": seconds, "top1": {k: v["top1"] for k, v in results.items()}}))


if __name__ == "__main__":
    main()
