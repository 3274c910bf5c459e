"""One run of the smoke config (`make run CONFIG=config/smoke.yaml`), SIGKILLed a third of the way and run again to
completion, and every test that reads it: the rerun redoes no finished job, every file it wrote is a declared output
of its rule, and an edited setting reruns exactly what depends on it. The run is this module's fixture: a test that
only reads a finished run belongs here rather than starting a run of its own."""

import copy
import csv
import io
import os
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import (
    MAKE_RUN,
    REPO,
    VENV_BIN,
    copy_workflow,
    file_problems,
    job_counts,
    raw_config,
    run_tool,
    tool_env,
)
from PIL import Image

from genview.config.load import load_config
from genview.contracts import OUTPUTS, Output
from genview.evaluation.runs import resolve_evaluations
from genview.report.specs import load_table_specs
from genview.training.experiments import RECIPE_EXECUTION_KEYS, resolve_experiments

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SMOKE = raw_config("smoke.yaml")


def finished_jobs(log: str) -> int:
    return len(re.findall(r"^Finished jobid: \d+ ", log, re.MULTILINE))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`make run CONFIG=config/smoke.yaml` in a copy of the workflow (in a folder named with a space and an
    apostrophe), SIGKILLed a third of the way with its Snakemake
    and jobs, then run again to completion: the kill test checks the counts, and every test that only reads a
    finished run (or dry-runs against it, without changing its files) uses the same folder."""
    # A checkout path with a space and an apostrophe, as a user's may have: every path must reach the jobs quoted.
    root = copy_workflow(tmp_path_factory.mktemp("smoke_run") / "it's a checkout")
    (root / ".venv").symlink_to(REPO / ".venv")
    total = job_counts(run_tool([VENV_BIN / "snakemake", "-n", "--configfile", "config/smoke.yaml"], cwd=root).stdout)[
        "total"
    ]
    first_log = root / "first_run.log"
    with open(first_log, "w") as log:
        process = subprocess.Popen(
            MAKE_RUN, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=tool_env(), start_new_session=True
        )
    deadline = time.monotonic() + 1200
    while process.poll() is None and time.monotonic() < deadline:
        if finished_jobs(first_log.read_text()) >= total // 3:  # data, views and some trainings done
            break
        time.sleep(0.2)
    assert process.poll() is None, f"the first run ended before the kill:\n{first_log.read_text()[-3000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    while True:  # the rerun comes after the crash, when every process of the killed run is gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    finished_before = finished_jobs(first_log.read_text())
    second = run_tool(MAKE_RUN, cwd=root, timeout=1800)
    return SimpleNamespace(
        root=root,
        total=total,
        finished_before=finished_before,
        finished_after=finished_jobs(second.stdout + second.stderr),
    )


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


def test_every_file_of_a_finished_run_matches_a_declared_path_of_its_rule(smoke_run):
    summary = run_tool(
        [VENV_BIN / "snakemake", "--summary", "--configfile", "config/smoke.yaml"], cwd=smoke_run.root
    ).stdout
    written = [(row["output_file"], row["rule"]) for row in csv.DictReader(io.StringIO(summary), delimiter="\t")]
    rules = {rule for _, rule in written}
    assert {"pretrain", "evaluate", "evaluate_cached", "generate_views", "table_cost"} <= rules, rules
    assert file_problems(written) == []
    # A wrong path is caught: the checkpoint declared under another name.
    moved = [
        Output(("results/pretrain/{experiment}/model.pt",), o.rules, o.what)
        if o.paths[0].endswith("checkpoint.pt")
        else o
        for o in OUTPUTS
    ]
    assert any("checkpoint.pt (rule pretrain)" in problem for problem in file_problems(written, moved))


def execution_edits(config: dict) -> list[tuple[tuple, object]]:
    """Every execution-only key of ``config`` with a new value: the recipes' execution settings, each experiment's
    memory and run time, the evaluation loaders, and the switches that change no output."""
    edits = []
    for recipe, settings in config["pretrain"]["recipes"].items():
        current = {
            **{"num_workers": 4, "save_every_epochs": 10, "save_every_steps": 0, "max_nonfinite_in_row": 20},
            **settings,
        }
        edits += [(("pretrain", "recipes", recipe, key), current[key] + 3) for key in RECIPE_EXECUTION_KEYS]
    for index, _ in enumerate(config["pretrain"]["matrix"]):
        edits += [(("pretrain", "matrix", index, "mem_mb"), 12345), (("pretrain", "matrix", index, "runtime"), 999)]
    edits += [(("evaluation", "num_workers"), 3), (("check_files",), False)]
    if config["analysis"]["complexity_scorer"] != "llm":
        edits.append((("analysis", "llm_attempts"), 2))  # read by the llm scorer only
    return edits


def edited(config: dict, key: tuple, value) -> dict:
    config = copy.deepcopy(config)
    node = config
    for part in key[:-1]:
        node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
    node[key[-1]] = value
    return config


def dry_run(root, config: dict, tmp_path, *targets) -> str:
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_tool([VENV_BIN / "snakemake", "-n", *targets, "--configfile", path], cwd=root)
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "key, value", execution_edits(SMOKE), ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
)
def test_an_execution_setting_reruns_nothing(smoke_run, tmp_path, key, value):
    assert "Nothing to be done" in dry_run(smoke_run.root, edited(SMOKE, key, value), tmp_path)


def scheduled(output: str, rule: str) -> list[str]:
    """The wildcards lines of the jobs of ``rule`` in a dry run's output."""
    return re.findall(rf"^rule {rule}:\n(?:    .*\n)*?    wildcards: (.*)$", output, re.MULTILINE)


def test_one_source_setting_reruns_its_views_and_what_depends_on_them_only(smoke_run, tmp_path):
    output = dry_run(smoke_run.root, edited(SMOKE, ("generation", "ic", "guidance_scale"), 9.0), tmp_path)
    counts = job_counts(output)
    shards = SMOKE["datasets"]["shapes"]["num_shards"]
    generated = scheduled(output, "generate_views")
    assert len(generated) == counts["generate_views"] == shards and all("source=ic" in w for w in generated)
    assert counts["collect_views"] == 1
    experiments = resolve_experiments(load_config(REPO / "config/smoke.yaml"))
    with_ic = {n for n, e in experiments.items() if "ic" in e["views"]["sources"]}
    trained = {re.search(r"experiment=([^,]+)", w)[1] for w in scheduled(output, "pretrain")}
    assert trained == with_ic and not any(experiments[n]["variant"] == "baseline" for n in trained)
    untouched = {
        "make_shapes",
        "index_dataset",
        "shard_shapes",
        "build_tiny_models",
        "fit_foreground",
        "foreground_shard",
        "complexity_shard",
        "fit_quality_vector",
    }
    assert not untouched & counts.keys()


def test_sources_and_class_names_do_not_reindex_or_retrain(smoke_run, tmp_path):
    output = dry_run(smoke_run.root, edited(SMOKE, ("datasets", "shapes", "sources"), ["ic", "tc"]), tmp_path)
    counts = job_counts(output)
    assert not {"make_shapes", "index_dataset", "shard_shapes", "generate_views"} & counts.keys()
    output = dry_run(smoke_run.root, edited(SMOKE, ("datasets", "shapes", "zeroshot_key"), "shapes"), tmp_path)
    counts = job_counts(output)
    assert {"evaluate_cached", "evaluate"} <= counts.keys()
    assert not {"index_dataset", "generate_views", "pretrain"} & counts.keys()
