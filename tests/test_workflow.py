"""The workflow itself: lint, format, dry-runs of both configs, and a real run of what exists so far."""

import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO, VENV_BIN, job_counts, placeholder_paper_config, raw_config, run_tool, snakemake
from PIL import Image

from genview.config.load import load_config
from genview.evaluation.runs import resolve_evaluations
from genview.report.specs import load_table_specs
from genview.training.experiments import resolve_experiments

pytestmark = pytest.mark.workflow


def test_lint():
    result = run_tool([VENV_BIN / "snakemake", "--lint", "--cores", "1"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def expected_jobs(config: dict) -> dict[str, int]:
    """The jobs of a complete run of a shapes config, counted from the config."""
    from genview.evaluation.runs import CACHED_PROTOCOLS

    shards = config["datasets"]["shapes"]["num_shards"]
    experiments = resolve_experiments(config)
    evaluations = resolve_evaluations(config, experiments)
    pairs = {(e, d) for e, _, d in evaluations} | {
        (e, config["report"]["tsne"]["dataset"]) for e in config["report"]["tsne"]["panels"].values()
    }
    # Another shapes set (the encoders' training set) is drawn and indexed, but never sharded or analysed.
    shapes_sets = sum(spec["kind"] == "shapes" for spec in config["datasets"].values())
    counts = {
        "make_shapes": shapes_sets,
        "index_dataset": shapes_sets,
        "shard_shapes": 1,
        "fit_foreground": 1,
        "foreground_shard": shards,
        "complexity_shard": shards,
        "generate_views": 3 * shards,
        "collect_views": 3,
        "fit_quality_vector": 1,
        "pretrain": len(experiments),
        "evaluate_cached": len(pairs),
        "evaluate": sum(p not in CACHED_PROTOCOLS for _, p, _ in evaluations),
        "all": 1,
        "figure_tsne": 1,
        "figure_gallery": 1,
        "figure_quality": 1,
        "table_cost": 1,
        **{f"table_{name}": 1 for name in load_table_specs(REPO / config["report"]["tables"])},
    }
    models = config["models"]
    if models["trained_encoder"]:
        counts["train_encoder"] = 2  # with and without the token heads (the checks' reference)
    if not models["unclip"].get("renderer"):
        counts["build_tiny_models"] = 1
    if config["report"]["checks"]:
        counts["ground_truth_checks"] = 1
    specs = load_table_specs(REPO / config["report"]["tables"]).values()
    if any(s.get("seeds") and s.get("compare_to") and any(c.get("expect") for c in s["columns"]) for s in specs):
        counts["claims"] = 1  # the summary of the tables' claimed directions
    counts = {name: count for name, count in counts.items() if count}
    return {**counts, "total": sum(counts.values())}


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_dry_run_plans_every_stage(workdir, name):
    result = snakemake("-n", "--cores", "1", "--configfile", REPO / "config" / name, workdir=workdir)
    config = load_config(REPO / "config" / name) if name == "smoke.yaml" else load_config(REPO / "config/config.yaml")
    assert job_counts(result.stdout) == expected_jobs(config)
    if name == "smoke.yaml":  # every protocol and every method of the workflow
        evaluations = resolve_evaluations(config, resolve_experiments(config))
        assert {p for _, p, _ in evaluations} == {"linear", "linear_fast", "knn", "semisup", "zeroshot", "retrieval"}


@pytest.mark.parametrize(
    "table, experiments, image_protocols",
    [
        ("vl_retrieval", 6, set()),
        ("ssl_linear", 18, {"linear"}),
    ],
)
def test_one_table_runs_only_the_jobs_it_needs(workdir, table, experiments, image_protocols):
    result = snakemake(
        f"table_{table}", "-n", "--cores", "1", "--configfile", REPO / "config/smoke.yaml", workdir=workdir
    )
    counts = job_counts(result.stdout)
    assert counts["pretrain"] == counts["evaluate_cached"] == experiments
    assert counts.get("evaluate", 0) == experiments * len(image_protocols)
    assert counts[f"table_{table}"] == 1
    assert not {name for name in counts if name.startswith(("table_", "figure_")) and name != f"table_{table}"}
    assert set(re.findall(r"^    wildcards: experiment=\S+, protocol=(\w+)", result.stdout, re.MULTILINE)) == (
        image_protocols
    )


def test_paper_dry_run_with_placeholder_roots(workdir, tmp_path):
    paper = workdir / "paper.yaml"
    config = placeholder_paper_config(paper, tmp_path / "data")
    result = snakemake("-n", "--cores", "1", "--configfile", paper, workdir=workdir)
    counts = job_counts(result.stdout)
    datasets = len(config["datasets"]) + len(config["eval_datasets"])
    assert counts["index_dataset"] == datasets
    views = sum(len(spec["sources"]) * spec["num_shards"] for spec in config["datasets"].values())
    assert counts["generate_views"] == views
    assert "build_tiny_models" not in counts, "real checkpoints are not built"
    assert counts["pretrain"] == len(resolve_experiments(load_config(paper)))
    assert "make_shapes" not in counts, "the embedded default's datasets must not leak into the paper config"
    assert {f"shard_{name}" for name in config["datasets"]} <= set(counts)
    shards = config["datasets"]["imagenet1k"]["num_shards"]
    assert f"results/data/imagenet1k/shards/{shards - 1}.csv" in result.stdout
    tables = load_table_specs(REPO / config["report"]["tables"])
    assert "ablation_quality" in tables
    assert {name for name in counts if name.startswith("table_")} == {f"table_{name}" for name in tables} | {
        "table_cost"
    }


@pytest.mark.slow
def test_make_run_killed_midway_reruns_to_completion_without_redoing_finished_jobs(smoke_run):
    """`make run` is SIGKILLed with its Snakemake and jobs; the same command then completes the run (the smoke config),
    runs only the jobs that had not finished, and every output is whole. The checkout's path has a space and an
    apostrophe (every table job failed on them). A comment edited in a rule retrains nothing, nor does moving the
    checkout."""
    root = smoke_run.root
    # No finished job runs again; at most the jobs whose end the kill cut off before it was logged are not counted.
    assert (
        smoke_run.total - smoke_run.finished_before - 2
        <= smoke_run.finished_after
        <= (smoke_run.total - smoke_run.finished_before)
    ), smoke_run
    check_embedded_default_outputs(root, root / "config/smoke.yaml")
    assert (root / "results/report.html").is_file()
    pretrain = root / "rules/pretrain.smk"
    original = pretrain.read_text()
    try:
        pretrain.write_text(
            original.replace("rule pretrain:\n", "rule pretrain:\n    # an edited comment: not a rerun trigger\n")
        )
        again = run_tool([VENV_BIN / "snakemake", "-n", "--configfile", "config/smoke.yaml"], cwd=root)
        assert "Nothing to be done" in again.stdout + again.stderr
    finally:
        pretrain.write_text(original)
    # The checkout moved with its results (no path reaches a job absolute): nothing reruns.
    moved = root.with_name("moved checkout")
    root.rename(moved)
    try:
        again = run_tool([VENV_BIN / "snakemake", "-n", "--configfile", "config/smoke.yaml"], cwd=moved)
        assert "Nothing to be done" in again.stdout + again.stderr, again.stdout
    finally:
        moved.rename(root)


def check_embedded_default_outputs(workdir, config):
    spec = yaml.safe_load(config.read_text())["datasets"]["shapes"]
    manifest = pd.read_csv(workdir / "results/data/shapes/manifest.csv", keep_default_na=False)
    assert len(manifest) == 12 * (spec["train_per_class"] + spec["test_per_class"])
    shards = [pd.read_csv(workdir / f"results/data/shapes/shards/{i}.csv") for i in range(spec["num_shards"])]
    assert sum(map(len, shards)) == 12 * spec["train_per_class"]
    assert all((workdir / p).is_file() for p in manifest.path) and all(
        (workdir / m).is_file() for m in manifest["mask"]
    )
    assert "accepted" in (workdir / "logs/data/shapes/index.log").read_text()
    fit = np.load(workdir / "results/analysis/shapes/fg_pca.npz")
    assert 0 <= float(fit["mean_iou"]) <= 1 and fit["sign"] in (1, -1)
    for source in spec["sources"]:
        for shard, rows in enumerate(shards):
            views = pd.read_csv(workdir / f"results/views/shapes/{source}/{shard}.manifest.csv")
            assert sorted(views.id) == sorted(rows.id)
            assert all(Image.open(workdir / v).size == (64, 64) for v in views.view)
    for name, experiment in resolve_experiments(load_config(config)).items():
        checkpoint = torch.load(workdir / f"results/pretrain/{name}/checkpoint.pt", weights_only=True)
        assert checkpoint["experiment"] == experiment and checkpoint["steps"] > 0
        assert os.stat(workdir / f"results/pretrain/{name}/checkpoint.pt").st_mode & 0o222 == 0  # protected()
    from genview.evaluation.runs import read_result

    for experiment, protocol, dataset in resolve_evaluations(
        load_config(config), resolve_experiments(load_config(config))
    ):
        result = read_result(experiment, protocol, dataset, root=str(workdir / "results/eval"))
        assert result["experiment"] == experiment and result["protocol"] == protocol and result["metrics"]
    for cache in workdir.glob("results/eval/*/features/*.npz"):
        with np.load(cache) as arrays:
            assert arrays["test/features"].size, cache
    foreground = pd.read_csv(workdir / "results/analysis/shapes/foreground/0.csv")
    complexity = pd.read_csv(workdir / "results/analysis/shapes/complexity/0.csv")
    assert set(foreground.noise_level) <= {0, 100, 200, 300, 400} and set(complexity.guidance_scale) <= {2, 4, 6, 8}
    for name in load_table_specs(REPO / load_config(config)["report"]["tables"]):
        markdown = (workdir / f"results/tables/{name}.md").read_text()
        assert "missing" not in markdown, f"every cell of {name} is filled by the run"
        assert all((workdir / f"results/tables/{name}.{suffix}").is_file() for suffix in ("tex", "csv", "html"))
    for figure in ("tsne", "gallery_ic", "gallery_tc", "quality_audit"):
        Image.open(workdir / f"results/figures/{figure}.png").verify()
    assert pd.read_csv(workdir / "results/figures/tsne.csv")["panel"].nunique() == 3
    cost = pd.read_csv(workdir / "results/tables/cost.csv")
    assert {"generate_views", "pretrain", "evaluate", "total"} <= set(cost["stage"])
    html = (workdir / "results/report.html").read_text()
    assert all(f"{name}.html" in html for name in ("ssl_linear", "vl_transfer")) and "tsne.png" in html


def test_gallery_of_a_dataset_with_fixed_noise_shows_only_guidance(workdir):
    """With the noise level fixed, there is no foreground analysis to show: only the TC gallery is built."""
    config = raw_config("smoke.yaml")
    config["datasets"]["shapes"]["generation"] = {"ic": {"noise_level": 200}, "itc": {"noise_level": 200}}
    path = workdir / "fixed_noise.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake("figure_gallery", "-n", "-p", "--cores", "1", "--configfile", path, workdir=workdir)
    counts = job_counts(result.stdout)
    assert counts["figure_gallery"] == 1 and "fit_foreground" not in counts and "foreground_shard" not in counts
    command = next(line for line in result.stdout.splitlines() if "report gallery" in line)
    assert "--out-tc results/figures/gallery_tc.png" in command and "--out-ic" not in command
