"""The workflow under a real SLURM, through profiles/slurm: a private single-node cluster with two fake GPUs
(tests/slurm_cluster.py) runs a subset of the smoke config (the data chain, one view-generation shard and
one pre-training experiment). Checks that every job went through sbatch, that the GPU rules got a GPU from
SLURM (asked for, allocated, and seen in the job as CUDA_VISIBLE_DEVICES) while the others got none, and that
the results are the same as those of a local run of the same targets. A second test runs a pre-training longer
than its jobs' time limit through the profile: it finishes over resumed jobs, with the weights of an uninterrupted run.

Needs root (it installs the Debian SLURM packages with apt-get when they are missing); elsewhere it is skipped
with the reason, except under CI (the CI variable set), where it fails instead: CI must run it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from helpers import VENV_BIN, checkpoint_weights, copy_workflow, run_tool, slurm_snakemake_command, tool_env
from slurm_cluster import LocalSlurm, SlurmUnavailable

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

EXPERIMENT = "shapes_simclr_baseline"
VIEWS = "results/views/shapes/ic/0.manifest.csv"
CHECKPOINT = f"results/pretrain/{EXPERIMENT}/checkpoint.pt"
TARGETS = (VIEWS, CHECKPOINT)
SMOKE = ("--configfile", "config/smoke.yaml")  # tiny diffusion stand-ins: every GPU rule of the view chain
# What the targets need, by where it runs (every job in SLURM: none of them is a localrule).
GPU_RULES = {"fit_foreground", "foreground_shard", "generate_views", "pretrain"}
CPU_RULES = {"build_tiny_models", "make_shapes", "index_dataset", "shard_shapes"}
SAME_FILES = (
    "results/data/shapes/manifest.csv",
    "results/analysis/shapes/foreground/0.csv",
    VIEWS,
)
RUN_LIMIT_S = 480  # the SLURM run takes ~2-3 minutes on 2 cores


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm_cluster"))
    try:
        cluster.start()
    except SlurmUnavailable as error:
        message = f"no local SLURM cluster: {error}"
        if in_ci():
            pytest.fail(f"{message} (CI is set: this test must run there, so it fails instead of skipping)")
        pytest.skip(message)
    print(f"local SLURM: packages {cluster.timings['install']:.1f} s, daemons up {cluster.timings['start']:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()


def python_shim(folder: Path, record: Path) -> Path:
    """A `python` first on PATH that appends what the job sees (SLURM job id, CUDA_VISIBLE_DEVICES, the first
    arguments) to ``record`` and then runs this interpreter: the rules call `python -m genview ...`."""
    folder.mkdir()
    shim = folder / "python"
    shim.write_text(
        "#!/bin/sh\n"
        f'printf \'%s\\t%s\\t%s %s %s %s %s\\n\' "${{SLURM_JOB_ID:-none}}" "${{CUDA_VISIBLE_DEVICES-unset}}"'
        f' "$1" "$2" "$3" "$4" "$5" >> \'{record}\'\n'
        f"exec '{sys.executable}' \"$@\"\n"
    )
    shim.chmod(0o755)
    return folder


@pytest.fixture
def local_run():
    """Starts `snakemake ARGS --cores 2` in a folder, in the background (``local_run(workdir, *args)``; its output
    goes to ``workdir/local_run.log``): the local run a SLURM run is compared with goes beside it, as the SLURM run
    spends most of its time waiting for the queue and its status checks. Two cores, as the SLURM jobs get: with
    one, Snakemake gives the two-thread rules one thread, and on the CPU the generated views then differ in the last
    digits (the thread count is part of a CPU job's floating-point result). A run still going when the test ends
    is killed."""
    processes = []

    def start(workdir: Path, *args) -> subprocess.Popen:
        with open(workdir / "local_run.log", "w") as log:
            processes.append(
                subprocess.Popen(
                    [str(VENV_BIN / "snakemake"), *map(str, args), "--cores", "2"],
                    cwd=workdir,
                    env=tool_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def finish_local_run(process: subprocess.Popen, workdir: Path, timeout: int) -> None:
    """Wait for a run the ``local_run`` fixture started in ``workdir``; it must succeed."""
    started = time.monotonic()
    process.wait(timeout=timeout)
    print(f"local run: finished {time.monotonic() - started:.0f} s after the SLURM run")
    log = (workdir / "local_run.log").read_text(errors="replace")
    assert process.returncode == 0, f"the local run exited {process.returncode}:\n{log[-4000:]}"


def rule_of(comment: str) -> str | None:
    """The plugin's sbatch --comment is rule_<rule> or rule_<rule>_wildcards_<values>."""
    for rule in GPU_RULES | CPU_RULES:
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_"):
            return rule
    return None


def resource_args(profile: dict, partition: str) -> list[str]:
    """The profile's default-resources with the test cluster's partition: a command-line --default-resources
    replaces the profile's whole key, so every entry is passed again."""
    defaults = {**profile["default-resources"], "slurm_partition": partition}
    defaults.pop("slurm_account", None)  # the test cluster has no accounts
    return [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in defaults.items()]


def diagnostics(workdir: Path, result: subprocess.CompletedProcess, cluster: LocalSlurm) -> str:
    parts = [
        f"--- snakemake stdout\n{result.stdout[-3000:]}",
        f"--- snakemake stderr\n{result.stderr[-5000:]}",
    ]
    for log in sorted((workdir / ".snakemake/slurm_logs").rglob("*.log"))[-4:]:
        parts.append(f"--- {log.relative_to(workdir)}\n{log.read_text(errors='replace')[-2000:]}")
    for log in sorted((workdir / "logs").rglob("*.log")):
        text = log.read_text(errors="replace")
        if "Error" in text or "Traceback" in text:
            parts.append(f"--- {log.relative_to(workdir)}\n{text[-2000:]}")
    parts.append(f"--- slurmctld.log\n{(cluster.base / 'log/slurmctld.log').read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)


def test_subset_of_the_smoke_config_under_slurm_uses_gpus_and_matches_a_local_run(slurm, local_run, tmp_path):
    local = copy_workflow(tmp_path / "local_run")
    local_process = local_run(local, *TARGETS, *SMOKE)
    # --- the run under SLURM, through the profile ----------------------------------------------------------
    workdir = copy_workflow(tmp_path / "slurm_run")
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    record = tmp_path / "python_calls.tsv"
    env = slurm.client_env(tool_env(python_shim(tmp_path / "shim", record)))
    env.pop("CUDA_VISIBLE_DEVICES", None)  # jobs see only what SLURM gives them (sbatch --export=ALL)
    env["GENVIEW_DEVICE"] = "cpu"  # the cluster's GPUs are fake: the jobs given one run on the CPU on purpose
    command = slurm_snakemake_command(
        RUN_LIMIT_S, *TARGETS, *SMOKE, default_resources=resource_args(profile, slurm.partition)
    )
    started = time.monotonic()
    result = subprocess.run(
        [str(c) for c in command],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S + 60,
    )
    slurm_s = time.monotonic() - started
    assert result.returncode == 0, (
        f"snakemake under SLURM exited {result.returncode}"
        f"{' (timed out)' if result.returncode == 124 else ''}\n" + diagnostics(workdir, result, slurm)
    )
    print(f"SLURM run: {slurm_s:.0f} s")

    # --- every job went through SLURM, GPU rules with a GPU, the others without ----------------------------
    jobs = {}
    for job in slurm.jobs():
        rule = rule_of(job.get("Comment", ""))
        if rule is not None and Path(job.get("WorkDir", "/")).resolve() == workdir.resolve():
            assert rule not in jobs, f"{rule} was submitted twice (a retry?): {job}"
            jobs[rule] = job
    assert set(jobs) == GPU_RULES | CPU_RULES, f"submitted: {sorted(jobs)}; snakemake said:\n{result.stderr[-3000:]}"
    for rule, job in sorted(jobs.items(), key=lambda item: int(item[1]["JobId"])):
        print(
            f"  job {job['JobId']:>3} {rule:<18} {job['JobState']} cpus={job.get('NumCPUs')}"
            f" asked={job.get('TresPerJob', '-')} got={job.get('JOB_GRES')} {job.get('RunTime')}"
        )
    for rule, job in jobs.items():
        assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), f"{rule}: {job}"
        assert job["Partition"] == slurm.partition
        if rule in GPU_RULES:
            assert job.get("TresPerJob") == "gres:gpu:1", f"{rule} did not ask SLURM for a GPU: {job}"
            assert job.get("JOB_GRES") == "gpu:fake:1", f"{rule} got no GPU from SLURM: {job}"
        else:
            assert "gpu" not in job.get("TresPerJob", ""), f"{rule} asked for a GPU: {job}"
            assert job.get("JOB_GRES") in (None, "(null)"), f"{rule} got a GPU: {job}"
    calls = [line.split("\t") for line in record.read_text().splitlines()]
    seen = {}
    for job_id, visible, arguments in calls:
        assert job_id != "none", f"`python {arguments}` ran outside SLURM"
        if arguments.startswith("-m genview"):
            seen.setdefault(job_id, set()).add(visible)
    for rule, job in jobs.items():
        visible = seen.get(job["JobId"])
        assert visible, f"no `python -m genview` call recorded in {rule}'s job {job['JobId']}"
        if rule in GPU_RULES:
            assert len(visible) == 1 and visible <= {"0", "1"}, f"{rule}: CUDA_VISIBLE_DEVICES was {visible}"
        else:
            assert visible == {"unset"}, f"{rule}: CUDA_VISIBLE_DEVICES was {visible}"

    # --- the same targets run locally give the same results ------------------------------------------------
    finish_local_run(local_process, local, timeout=600)
    for path in SAME_FILES:
        assert (workdir / path).read_bytes() == (local / path).read_bytes(), f"{path} differs"
    views = pd.read_csv(workdir / VIEWS)
    assert len(views) > 0
    view_dir = Path(VIEWS.removesuffix(".manifest.csv"))
    names = [sorted(p.name for p in (d / view_dir).iterdir()) for d in (workdir, local)]
    assert names[0] == names[1], "the view folders hold different files"
    for view in views.view:
        assert (workdir / view).read_bytes() == (local / view).read_bytes(), f"{view} differs"
    remote, here = (torch.load(d / CHECKPOINT, map_location="cpu", weights_only=True) for d in (workdir, local))
    assert remote["experiment"] == here["experiment"] and remote["steps"] == here["steps"] > 0
    for part in ("backbone", "method"):
        assert remote[part].keys() == here[part].keys()
        for name, tensor in remote[part].items():
            assert torch.equal(tensor, here[part][name]), f"checkpoint {part}.{name} differs"


# --- a pre-training longer than the time limit ------------------------------------------------------------------
CAPPED_CONFIG = """\
standalone: true
seed: 0
datasets:
  shapes: {kind: shapes, num_shards: 1, image_size: 64, train_per_class: 20, test_per_class: 1, sources: [ic]}
pretrain:
  recipes:
    capped: {epochs: 20, batch_size: 32, optimizer: sgd, lr: 0.5, weight_decay: 0.0001, image_size: 32,
             num_workers: 1, save_every_epochs: 10}
  backbones:
    vit: {name: vit, image_size: 32, patch_size: 4, embed_dim: 128, depth: 4, num_heads: 4}
  experiments:
    capped: {method: simclr, variant: baseline, recipe: capped, backbone: vit, dataset: shapes,
             method_args: {simclr: {proj_hidden_dim: 128, proj_dim: 32}}}
"""
CAPPED_CHECKPOINT = "results/pretrain/capped/checkpoint.pt"
CAPPED_MANIFEST = "results/data/shapes/manifest.csv"
CAP_MINUTES = 1  # the SLURM time limit of each job; the training takes about 2 minutes of compute here
CAPPED_STEPS = 20 * 7  # epochs x steps (224 training images, batches of 32)
# Each job trains for 20-40 s of its minute (Snakemake and torch start first), and the plugin notices a finished
# job up to a minute later: about 2 minutes per job.
CAPPED_RUN_LIMIT_S = 1500


def test_a_pretraining_longer_than_the_time_limit_finishes_over_resumed_jobs(slurm, local_run, tmp_path):
    """The profile's pretrain settings (SIGTERM before the limit, many retries, the trainer's resume point) carry a
    training of a few minutes through jobs capped at one minute, to the weights of an uninterrupted run."""
    config = ["--configfile", "capped.yaml"]
    local = copy_workflow(tmp_path / "capped_local")  # the same training uninterrupted, locally
    (local / "capped.yaml").write_text(CAPPED_CONFIG)
    local_process = local_run(local, CAPPED_CHECKPOINT, *config)
    workdir = copy_workflow(tmp_path / "capped_run")
    (workdir / "capped.yaml").write_text(CAPPED_CONFIG)
    run_tool([VENV_BIN / "snakemake", CAPPED_MANIFEST, "--cores", "2", *config], cwd=workdir)  # data, locally
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    assert profile["preemptible-rules"] == ["pretrain"] and profile["preemptible-retries"] >= 10
    assert profile["set-resources"]["pretrain"]["slurm_extra"] == "'--signal=TERM@300'"
    env = slurm.client_env(tool_env())
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env["GENVIEW_DEVICE"] = "cpu"  # fake GPUs
    # The site's numbers, shrunk: a one-minute limit, and SIGTERM 1 s before it (SLURM checks limits and sends the
    # warning signal every 30 s or so, so a job gets between 30 and 60 s before its signal arrives).
    pretrain_resources = {
        **profile["set-resources"]["pretrain"],
        "runtime": CAP_MINUTES,
        "slurm_extra": "'--signal=TERM@1'",
    }
    command = [
        *slurm_snakemake_command(
            CAPPED_RUN_LIMIT_S, CAPPED_CHECKPOINT, *config, default_resources=resource_args(profile, slurm.partition)
        ),
        "--set-resources",
        *[f"pretrain:{key}={value}" for key, value in pretrain_resources.items()],
    ]
    started = time.monotonic()
    result = subprocess.run(
        [str(c) for c in command], cwd=workdir, env=env, capture_output=True, text=True, timeout=CAPPED_RUN_LIMIT_S + 60
    )
    assert result.returncode == 0, f"snakemake under SLURM exited {result.returncode}\n" + diagnostics(
        workdir, result, slurm
    )
    jobs = sorted(
        (
            job
            for job in slurm.jobs()
            if rule_of(job.get("Comment", "")) == "pretrain"
            and Path(job.get("WorkDir", "/")).resolve() == workdir.resolve()
        ),
        key=lambda job: int(job["JobId"]),
    )
    print(f"capped pre-training under SLURM: {time.monotonic() - started:.0f} s, {len(jobs)} job(s)")
    for job in jobs:
        print(
            f"  job {job['JobId']:>3} {job['JobState']:<9} exit {job['ExitCode']} time limit {job['TimeLimit']}"
            f" ran {job['RunTime']}"
        )
    assert len(jobs) >= 2, "the training fitted in one job: the test needs a longer training or a shorter limit"
    assert all(job["TimeLimit"] == f"00:0{CAP_MINUTES}:00" for job in jobs)
    # Every job but the last was ended by the trainer: status 75 after saving its resume point (FAILED; TIMEOUT
    # when the signal came at the limit itself and the job ended within KillWait).
    assert {job["JobState"] for job in jobs[:-1]} <= {"FAILED", "TIMEOUT"}, jobs
    assert (jobs[-1]["JobState"], jobs[-1]["ExitCode"]) == ("COMPLETED", "0:0")
    job_logs = {log.stem: log.read_text(errors="replace") for log in (workdir / ".snakemake/slurm_logs").rglob("*.log")}
    for job in jobs[:-1]:
        assert "exit status 75" in job_logs[job["JobId"]], job_logs[job["JobId"]][-2000:]
    last_log = (workdir / "logs/pretrain/capped.log").read_text(errors="replace")  # the last job's (2> log)
    assert "resumed from results/pretrain/capped/resume.pt" in last_log, last_log[-2000:]

    finish_local_run(local_process, local, timeout=900)
    resumed, uninterrupted = (
        checkpoint_weights(workdir / CAPPED_CHECKPOINT),
        checkpoint_weights(local / CAPPED_CHECKPOINT),
    )
    assert resumed.keys() == uninterrupted.keys() and resumed["steps"] == uninterrupted["steps"] == CAPPED_STEPS
    differing = [name for name in resumed if name != "steps" and not torch.equal(resumed[name], uninterrupted[name])]
    assert not differing, f"weights differ from the uninterrupted run: {differing[:5]}"
    print(f"  {len(resumed) - 1} tensors identical to the uninterrupted run's")
