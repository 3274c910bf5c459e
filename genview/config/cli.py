"""``genview config check FILE``: validate a config file as the Snakefile does and print it resolved;
``genview config estimate FILE [RATES]``: GPU-hours per stage before anything runs."""

from __future__ import annotations

import sys

import yaml


def _check(args) -> None:
    from genview.config.load import SCHEMA_PATH, workflow_config
    from genview.config.resolve import resolve_config

    source = " + ".join(map(str, args.files))
    config = workflow_config(args.files)
    resolved = resolve_config(config, SCHEMA_PATH.parent.parent, source=source)
    for warning in resolved.warnings:
        print(f"{source}: warning: {warning}", file=sys.stderr)
    if args.print:
        yaml.safe_dump(config, sys.stdout, sort_keys=False)
    else:
        print(
            f"{source}: valid ({len(resolved.experiments)} experiment(s), {len(resolved.evaluations)} "
            f"evaluation(s), {len(resolved.tables)} table(s){'' if config['check_files'] else '; files not checked'})"
        )
        _print_sources(args.files)


def _print_sources(files) -> None:
    """Which files were combined and where each top-level key came from: a key deleted from a copy of the embedded
    default still comes from the default (a merge adds and changes keys, it cannot remove one)."""
    from genview.config.load import config_sources, load_schema

    layers, sources = config_sources(files)
    merged_into_default = layers[0].endswith("(the embedded default)")
    how = "merged in this order" if merged_into_default else "in this order (bases first), not merged into the default"
    print(f"files, {how}: {', '.join(layers)}")
    by_file: dict[str, list[str]] = {}
    for key in load_schema()["properties"]:
        by_file.setdefault(sources.get(key, "the schema's defaults"), []).append(key)
    for name in [*layers, "the schema's defaults"]:
        if by_file.get(name):
            print(f"  from {name}: {', '.join(by_file[name])}")
    if merged_into_default:
        print("  (to drop a key of the embedded default, say standalone: true in your file: it then replaces it)")


def _estimate(args) -> None:
    from pathlib import Path

    import pandas as pd

    from genview.config.estimate import estimate_gpu_hours, loader_shortfalls, render_estimate
    from genview.config.load import SCHEMA_PATH, workflow_config
    from genview.config.resolve import resolve_config
    from genview.method_catalog import METHOD_CATALOG

    config = workflow_config(args.file)
    config["check_files"] = False  # an estimate needs no data on this machine
    resolved = resolve_config(config, SCHEMA_PATH.parent.parent, source=" + ".join(args.file))
    experiments, evaluations = resolved.experiments, resolved.evaluations
    counts = dict(config["estimate"]["images"])
    for dataset in {**config["datasets"], **config["eval_datasets"]}:
        manifest = Path(args.results, "data", dataset, "manifest.csv")
        if manifest.is_file():  # the real count, once the dataset is indexed
            rows = pd.read_csv(manifest, usecols=["split"], dtype=str)
            counts[dataset] = int((rows["split"] == "train").sum()) if dataset in config["datasets"] else len(rows)
    catalog = METHOD_CATALOG
    vision_language = {name for name, info in catalog.items() if info.kind == "vision_language"}
    table = estimate_gpu_hours(config, experiments, evaluations, counts, vision_language)
    augmentation = {name: info.default_augmentation for name, info in catalog.items()}
    cpus_per_gpu = _profile_cpus_per_gpu(SCHEMA_PATH.parent.parent)
    warnings = loader_shortfalls(config, experiments, resolved.execution, augmentation, cpus_per_gpu)
    print(render_estimate(table, counts, config["estimate"]["rates_from"], warnings), end="")


def _profile_cpus_per_gpu(repo) -> int | None:
    """The CPUs per GPU that profiles/slurm gives a pre-training job (None where it sets none)."""
    from pathlib import Path

    profile = yaml.safe_load((Path(repo) / "profiles" / "slurm" / "config.yaml").read_text())
    return (profile.get("set-resources") or {}).get("pretrain", {}).get("cpus_per_gpu")


def _docs(args) -> None:
    from genview.config.docs import write_generated_docs

    for path in write_generated_docs():
        print(f"wrote {path}")


def register(stages) -> None:
    stage = stages.add_parser("config", help="validate configuration files")
    commands = stage.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="validate config files as the Snakefile does, before any job: schema, experiments, "
        "evaluations, tables, figures and the files they name",
    )
    check.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="config files, as given to --configfile (merged in order into the embedded default "
        "unless they say standalone: true)",
    )
    check.add_argument("--print", action="store_true", help="print the config with defaults filled in")
    check.set_defaults(run=_check)
    estimate = commands.add_parser("estimate", help="GPU-hours per stage, from image counts and per-GPU rates")
    estimate.add_argument(
        "file",
        nargs="+",
        help="config file(s), merged in order like snakemake --configfile A B: "
        "e.g. the config, then the rates file benchmarks/rates.py wrote",
    )
    estimate.add_argument("--results", default="results", help="where indexed manifests give exact image counts")
    estimate.set_defaults(run=_estimate)
    docs = commands.add_parser(
        "docs",
        help="write the generated docs: docs/configuration.md (from the schema) and docs/outputs.md (from the "
        "file contracts)",
    )
    docs.set_defaults(run=_docs)
