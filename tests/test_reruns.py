"""Reruns redo exactly what changed: a training killed mid-way resumes exactly after its run time was raised. (What an
edited setting reruns on a finished run is checked on the shared smoke run, in tests/test_smoke_run.py.)"""

import contextlib
import copy
import os
import signal
import subprocess
import time

import pytest
import torch
import yaml
from helpers import raw_config, run_tool, snakemake_command, tool_env

from genview.config.load import load_config
from genview.training.experiments import resolve_experiments
from genview.training.train import train

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SMOKE = raw_config("smoke.yaml")


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
