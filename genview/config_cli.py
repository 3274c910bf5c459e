"""``genview config check FILE``: validate a config file as the Snakefile does and print it resolved;
``genview config estimate FILE [RATES]``: GPU-hours per stage before anything runs."""

from __future__ import annotations

import sys

import yaml


def _check(args) -> None:
    from genview.config import load_config

    config = load_config(args.file)
    if args.print:
        yaml.safe_dump(config, sys.stdout, sort_keys=False)
    else:
        print(f"{args.file}: valid")


def _estimate(args) -> None:
    from pathlib import Path

    import pandas as pd

    from genview.config import load_config_files
    from genview.estimate import estimate_gpu_hours, render_estimate
    from genview.evaluation.runs import resolve_evaluations
    from genview.methods import method_class
    from genview.training.experiments import resolve_experiments

    config = load_config_files(args.file)
    experiments = resolve_experiments(config)
    evaluations = resolve_evaluations(config, experiments)
    counts = dict(config["estimate"]["images"])
    for dataset in {**config["datasets"], **config["eval_datasets"]}:
        manifest = Path(args.results, "data", dataset, "manifest.csv")
        if manifest.is_file():  # the real count, once the dataset is indexed
            rows = pd.read_csv(manifest, usecols=["split"], dtype=str)
            counts[dataset] = int((rows["split"] == "train").sum()) if dataset in config["datasets"] else len(rows)
    vision_language = {e["method"] for e in experiments.values() if method_class(e["method"]).kind != "two_view"}
    table = estimate_gpu_hours(config, experiments, evaluations, counts, vision_language)
    print(render_estimate(table, counts, config["estimate"]["rates_from"]), end="")


def register(stages) -> None:
    stage = stages.add_parser("config", help="validate configuration files")
    commands = stage.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a config file against config/schema.yaml")
    check.add_argument("file")
    check.add_argument("--print", action="store_true", help="print the config with defaults filled in")
    check.set_defaults(run=_check)
    estimate = commands.add_parser("estimate", help="GPU-hours per stage, from image counts and per-GPU rates")
    estimate.add_argument("file", nargs="+", help="config file(s), merged in order like snakemake --configfile A B: "
                          "e.g. the config, then the rates file benchmarks/rates.py wrote")
    estimate.add_argument("--results", default="results", help="where indexed manifests give exact image counts")
    estimate.set_defaults(run=_estimate)
