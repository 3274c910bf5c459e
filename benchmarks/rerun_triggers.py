"""What a rerun schedules after one config key changes, on a finished run: key -> jobs, per rule.

    python benchmarks/rerun_triggers.py [--config config/paper.yaml] [--keys KEY=VALUE ...] [--smoke]

The finished run is simulated: the workflow's DAG is marked done with `snakemake --touch` in a scratch folder (dataset
roots pointed at placeholder folders, no job runs), which records every job's params as a real run would. Then each
key is changed alone (a copy of the config with the new value) and `snakemake -n` says which jobs would run again.
Execution settings (loader workers, run time, memory) should schedule nothing; a setting of one stage should
schedule that stage and what depends on it. The default keys are the ones the reliability docs list.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import job_counts, placeholder_datasets  # noqa: E402  (the tests' placeholder data, reused)

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DEFAULT_KEYS = [
    "evaluation.num_workers=16",
    "pretrain.recipes.genviewpp_cc3m_25e.num_workers=16",
    "pretrain.recipes.mocov3_r50_100e.save_every_steps=500",
    "pretrain.matrix.0.runtime=8000",
    "pretrain.matrix.0.mem_mb=300000",
    "analysis.llm_attempts=3",
    "datasets.cc3m.zeroshot_key=imagenet1k",
    "generation.tc.guidance_scale=5",
    "generation.steps=25",
    "evaluation.linear.epochs=100",
]


def parse_value(text: str):
    return yaml.safe_load(text)


def set_key(config: dict, dotted: str, value) -> dict:
    config = copy.deepcopy(config)
    parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    node = config
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[parts[-1]] = value
    return config


def snakemake(workdir: Path, config: Path, *args: str) -> str:
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "1",
        "--configfile",
        str(config),
        *args,
    ]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="the config of the finished run (default: config/paper.yaml)")
    parser.add_argument("--keys", nargs="+", default=DEFAULT_KEYS, metavar="KEY=VALUE")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the first key on the embedded default (config/config.yaml, unless --config), one shard per dataset: "
        "`--touch` waits 0.1 s per job, 22 s for the paper's",
    )
    args = parser.parse_args(argv)
    args.config = args.config or str(REPO / ("config/config.yaml" if args.smoke else "config/paper.yaml"))
    scratch = Path(tempfile.mkdtemp(prefix="rerun_triggers_"))
    config = placeholder_datasets(yaml.safe_load(Path(args.config).read_text()), scratch / "data")
    if args.smoke:
        args.keys = args.keys[:1]
        for spec in config["datasets"].values():
            spec["num_shards"] = 1
    base = scratch / "base.yaml"
    base.write_text(yaml.safe_dump(config))
    workdir = scratch / "work"
    workdir.mkdir()
    # --touch stamps existing outputs only: create every output of the DAG first (empty files).
    for line in snakemake(workdir, base, "--summary").splitlines()[1:]:
        output = line.split("\t")[0]
        if output.startswith("results/"):
            (workdir / output).parent.mkdir(parents=True, exist_ok=True)
            (workdir / output).touch()
    snakemake(workdir, base, "--touch", "--quiet", "all")
    total = job_counts(snakemake(workdir, base, "-n", "--forceall"))["total"]
    print(f"{args.config}: {total} jobs in the finished run\n")
    print("| key changed | jobs scheduled | by rule |\n|---|---|---|")
    for item in args.keys:
        key, _, text = item.partition("=")
        edited = scratch / "edited.yaml"
        edited.write_text(yaml.safe_dump(set_key(config, key, parse_value(text))))
        output = snakemake(workdir, edited, "-n")
        counts = {} if "Nothing to be done" in output else job_counts(output)
        rules = ", ".join(f"{rule} {n}" for rule, n in counts.items() if rule != "total") or "-"
        print(f"| `{key}: {text}` | {counts.get('total', 0)} | {rules} |", flush=True)


if __name__ == "__main__":
    main()
