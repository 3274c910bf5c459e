"""The workflow itself: lint, format, dry-runs of both configs, and a real run of what exists so far."""

import re

import pytest
import yaml
from helpers import REPO, VENV_BIN, job_counts, placeholder_paper_config, raw_config, run_tool, snakemake

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
        counts["ground_truth_checks"] = counts["train_pixel_judge"] = 1
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
        ("vl_retrieval", 4, set()),
        ("ssl_linear", 8, set()),
        ("vl_transfer", 4, {"linear"}),
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
