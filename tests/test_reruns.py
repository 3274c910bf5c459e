"""Reruns redo exactly what changed: on a finished run, an execution setting schedules nothing, a setting of one view
source schedules that source's views and what depends on them, and a training killed mid-way resumes exactly after
its run time was raised."""

import contextlib
import copy
import os
import re
import signal
import subprocess
import time

import pytest
import torch
import yaml
from helpers import REPO, VENV_BIN, job_counts, raw_config, run_tool, snakemake_command, tool_env

from genview.config.load import load_config
from genview.training.experiments import RECIPE_EXECUTION_KEYS, resolve_experiments
from genview.training.train import train

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SMOKE = raw_config("smoke.yaml")


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


def test_a_killed_training_resumes_exactly_after_its_run_time_was_raised(tmp_path):
    """Snakemake runs one training, which is SIGKILLed mid-way; the config's run time, memory and loader workers are
    raised (as after a SLURM time-out); the rerun resumes from the resume point and ends with the weights of an
    uninterrupted training."""
    config = copy.deepcopy(SMOKE)
    config["pretrain"]["recipes"]["tiny_ssl"].update(epochs=6, save_every_steps=1)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    workdir = tmp_path / "work"
    workdir.mkdir()
    target = "results/pretrain/shapes_simclr_baseline/checkpoint.pt"
    command = snakemake_command("--cores", "2", target, "--configfile", path, workdir=workdir)
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=tool_env(), start_new_session=True
        )
    metrics, deadline = (
        workdir / "results/pretrain/shapes_simclr_baseline/metrics.partial.jsonl",
        time.monotonic() + 600,
    )
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().count('"type": "step"') >= 6:
            break
        time.sleep(0.05)
    assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    steps_before = metrics.read_text().count('"type": "step"')
    for entry in config["pretrain"]["matrix"]:
        entry.update(runtime=600, mem_mb=16000)
    config["pretrain"]["recipes"]["tiny_ssl"].update(num_workers=1, save_every_steps=2)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_tool(command[:5] + ["--unlock", "--configfile", path], cwd=workdir)  # the kill left Snakemake's lock
    second = run_tool(command, cwd=workdir)
    log = (workdir / "logs/pretrain/shapes_simclr_baseline.log").read_text()
    assert "resumed from" in log and "starting over" not in log, log[-2000:]
    final = torch.load(workdir / target, weights_only=True)
    assert final["steps"] > steps_before, second.stdout[-2000:]
    experiment = resolve_experiments(load_config(path))["shapes_simclr_baseline"]
    assert final["experiment"] == experiment
    # The job ran with Snakemake's OMP_NUM_THREADS=1 (the rule's threads); a reference computed with more threads
    # sums in another order and differs in the last bits.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with contextlib.chdir(workdir):  # the manifest's paths are relative to the workflow's folder
        train(
            experiment,
            tmp_path / "reference",
            manifest="results/data/shapes/manifest.csv",
            view_manifests=[],
            execution={"num_workers": 0},
        )
    torch.set_num_threads(threads)
    reference = torch.load(tmp_path / "reference/checkpoint.pt", weights_only=True)
    assert reference["method"].keys() == final["method"].keys()
    assert all(torch.equal(reference["method"][k], final["method"][k]) for k in reference["method"])
