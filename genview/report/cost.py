"""The cost table: wall time and GPU-hours per stage, from the ``benchmark:`` files Snakemake wrote.

Benchmark files live at ``<root>/<rule>/<wildcards...>.tsv`` (one per job). A job's GPU-hours are its wall time
times the GPUs its rule declared (``gpus`` below), so on a CPU-only run they count the GPU time the same jobs
would hold on a GPU node, not GPU time spent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from genview.errors import BadInputError
from genview.io import atomic_path

COLUMNS = ["stage", "jobs", "wall_hours", "mean_job_seconds", "max_job_seconds", "max_rss_mb", "gpu_hours"]


def job_gpus(rule: str, parts: tuple[str, ...], gpus: dict) -> int:
    """GPUs a job declared: ``gpus`` maps a rule to a count, or to {what the count depends on: count}, which the
    rule's benchmark path names first below the rule folder (its first folder, or the file's stem): the
    experiment of a pre-training, the protocol of an evaluation, the size of the rehearsal models."""
    declared = gpus.get(rule, 0)
    if isinstance(declared, int):
        return declared
    return int(declared.get(Path(parts[0]).stem, 0))


def read_benchmarks(root: str | os.PathLike, gpus: dict) -> pd.DataFrame:
    """One row per benchmark file: rule, job (its path below the rule), seconds, max RSS, declared GPUs."""
    root = Path(root)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        rule, *parts = path.relative_to(root).parts
        try:
            record = pd.read_csv(path, sep="\t").iloc[-1]  # a rerun with --benchmark-repeats keeps the last
            seconds, rss = float(record["s"]), pd.to_numeric(record["max_rss"], errors="coerce")
        except (KeyError, IndexError, ValueError, pd.errors.ParserError) as error:
            raise BadInputError(f"{path}: not a Snakemake benchmark file ({error})") from None
        rows.append(
            dict(
                rule=rule, job="/".join(parts), seconds=seconds, max_rss_mb=rss, gpus=job_gpus(rule, tuple(parts), gpus)
            )
        )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "gpus"])


def cost_table(jobs: pd.DataFrame, stage_order: list[str]) -> pd.DataFrame:
    """Per stage (rule): jobs, total wall hours, mean and max job seconds, max RSS, GPU-hours; then a total."""
    jobs = jobs.assign(gpu_hours=jobs["seconds"] * jobs["gpus"] / 3600)
    grouped = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"),
        wall_hours=("seconds", lambda s: s.sum() / 3600),
        mean_job_seconds=("seconds", "mean"),
        max_job_seconds=("seconds", "max"),
        max_rss_mb=("max_rss_mb", "max"),
        gpu_hours=("gpu_hours", "sum"),
    )
    order = [rule for rule in stage_order if rule in grouped.index]
    order += sorted(set(grouped.index) - set(order))
    table = grouped.loc[order].reset_index().rename(columns={"rule": "stage"})
    total = dict(
        stage="total",
        jobs=int(table["jobs"].sum()),
        wall_hours=table["wall_hours"].sum(),
        mean_job_seconds=jobs["seconds"].mean(),
        max_job_seconds=jobs["seconds"].max(),
        max_rss_mb=jobs["max_rss_mb"].max(),
        gpu_hours=table["gpu_hours"].sum(),
    )
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)[COLUMNS]


def render_cost(table: pd.DataFrame) -> str:
    lines = [
        "## Cost per stage",
        "",
        "| Stage | Jobs | Wall (h, summed) | Mean job (s) | Longest job (s) | Max RSS (MB) | GPU-hours |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples():
        rss = "" if pd.isna(row.max_rss_mb) else f"{row.max_rss_mb:.0f}"
        lines.append(
            f"| {row.stage} | {row.jobs} | {row.wall_hours:.3f} | {row.mean_job_seconds:.1f} | "
            f"{row.max_job_seconds:.1f} | {rss} | {row.gpu_hours:.3f} |"
        )
    lines += [
        "",
        "Wall time is summed over jobs (not elapsed time: jobs run in parallel). GPU-hours = wall time x "
        "the GPUs each job's rule declared.",
    ]
    return "\n".join(lines) + "\n"


def write_cost(root: str | os.PathLike, gpus: dict, stage_order: list[str], out_prefix: str | os.PathLike):
    jobs = read_benchmarks(root, gpus)
    if jobs.empty:
        raise BadInputError(f"no benchmark files under {root}: run the workflow first")
    table = cost_table(jobs, stage_order)
    with atomic_path(f"{out_prefix}.md") as tmp:
        tmp.write_text(render_cost(table))
    with atomic_path(f"{out_prefix}.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
