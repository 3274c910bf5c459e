"""Dry-run time of the paper configuration against its shard count, measured side by side in one run.

    python benchmarks/dag.py [--fractions 0.125 0.25 0.5 1 2] [--repeats 2] [--smoke]

Each point scales every training dataset's num_shards of config/paper.yaml by a fraction (dataset roots pointed at
empty placeholder folders, so nothing is read), runs `snakemake -n` (the DAG of every job, no execution) and prints
jobs, seconds (best of --repeats) and ms per job. Linear growth shows as a flat ms/job column; the goal is <= 10 s at
the paper's shard counts (fraction 1). Snakemake's start-up is included, as users see it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def scaled_config(workdir: Path, fraction: float) -> Path:
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    for section in ("datasets", "eval_datasets"):
        for name, spec in config[section].items():
            spec["root"] = str(workdir / "placeholders" / name)
            Path(spec["root"]).mkdir(parents=True, exist_ok=True)
            if section == "datasets":
                spec["num_shards"] = max(1, round(spec["num_shards"] * fraction))
    config["check_files"] = False  # placeholder folders: the DAG is measured, not the data
    path = workdir / f"paper_{fraction}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(config: Path, workdir: Path) -> tuple[int, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [
            str(SNAKEMAKE),
            "-n",
            "--quiet",
            "rules",
            "--cores",
            "1",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    return int(re.search(r"^total\s+(\d+)$", result.stdout, re.MULTILINE).group(1)), seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="one point at one shard per dataset, one run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.fractions, args.repeats = [0.0], 1
    workdir = Path(tempfile.mkdtemp(prefix="genview_dag_"))
    try:
        print(f"{'fraction':>8} {'jobs':>7} {'seconds':>8} {'ms/job':>7}")
        for fraction in args.fractions:
            config = scaled_config(workdir, fraction)
            runs = [dry_run(config, workdir / "work") for _ in range(args.repeats)]
            jobs, seconds = runs[0][0], min(seconds for _, seconds in runs)
            print(f"{fraction:8g} {jobs:7d} {seconds:8.2f} {1000 * seconds / jobs:7.2f}", flush=True)
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
