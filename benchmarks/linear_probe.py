"""`linear_fast` (ours: logistic regression on cached features) vs `linear` (the paper's ten SGD heads on augmented
images through the frozen backbone), on the same experiment and dataset, measured side by side.

    python benchmarks/linear_probe.py [--experiment shapes_simclr_baseline_s0] [--dataset shapes] [--linear-epochs 90]

Needs the experiment's checkpoint and feature cache (run the embedded default first: `make run`). Prints each
protocol's wall time and top-1, the speed ratio and the accuracy difference (goal: >= 10x faster within 1 point).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from genview.config import load_config
from genview.evaluation.protocols import EvalContext, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="shapes_simclr_baseline_s0")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--linear-epochs", type=int, default=90)
    args = parser.parse_args()
    config = load_config(args.config)
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
