"""A pre-training stopped by the signal a scheduler sends before its time limit saves a resume point at the next step
boundary and exits with status 75 ("time limit reached; resubmit to continue"); the rerun resumes there and ends
with the weights of an uninterrupted run (CPU kernels are deterministic). Without SLURM: the signal is sent to the
training process (SIGTERM to its whole process group, loader workers included, as SLURM does)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import checkpoint_weights, genview_command, indexed_shapes, one_experiment_config, pretrain_run_args

from genview.training.experiments import resolve_experiments

pytestmark = pytest.mark.slow

TIME_LIMIT_EXIT = 75


def experiment(epochs: int, batch_size: int) -> dict:
    config = one_experiment_config(
        "mocov2",
        {"epochs": epochs, "batch_size": batch_size, "image_size": 32, "optimizer": "sgd", "lr": 0.1},
        {"name": "vit", "image_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 4},
        method_args={"mocov2": {"proj_hidden_dim": 64, "proj_dim": 16, "queue_size": 64}},
    )
    return resolve_experiments(config)["e"]


def pretrain(root, out_dir, exp) -> subprocess.Popen:
    return subprocess.Popen(
        genview_command(
            *pretrain_run_args(
                exp, out_dir, root / "manifest.csv", "--device", "cpu", "--num-workers", "2", "--save-every-epochs", "1"
            )
        ),  # loader workers must ignore the stop signal too
        cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def steps_done(out_dir) -> int:
    path = out_dir / "metrics.partial.jsonl"
    return sum('"type": "step"' in line for line in path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("time_limit")
    indexed_shapes(root, train_per_class=4)  # 48 training images: 6 steps of 8 per epoch
    exp = experiment(epochs=4, batch_size=8)
    reference = pretrain(root, root / "uninterrupted", exp)
    _, stderr = reference.communicate(timeout=600)
    assert reference.returncode == 0, stderr[-3000:]
    return root, exp, checkpoint_weights(root / "uninterrupted/checkpoint.pt")


@pytest.mark.parametrize(
    "number, whole_group",
    [(signal.SIGTERM, True), (signal.SIGUSR1, False)],
    ids=["SIGTERM to the job's processes", "SIGUSR1 to the trainer"],
)
def test_a_stop_signal_saves_a_resume_point_and_the_rerun_ends_with_the_uninterrupted_weights(
    setup, number, whole_group
):
    root, exp, expected = setup
    out_dir = root / f"stopped_{number.name}"
    run = pretrain(root, out_dir, exp)
    deadline = time.monotonic() + 300
    while steps_done(out_dir) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    (os.killpg if whole_group else os.kill)(run.pid, number)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == TIME_LIMIT_EXIT, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"genview pretrain: error: e: {number.name} received: time limit reached; resubmit to continue"
    ), last
    assert not (out_dir / "checkpoint.pt").exists()
    resume = torch.load(out_dir / "resume.pt", map_location="cpu", weights_only=True)
    assert 2 <= resume["global_step"] < expected["steps"], "the stop did not fall inside the run"
    assert steps_done(out_dir) == resume["global_step"]  # no step ran after the saved one

    rerun = pretrain(root, out_dir, exp)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-3000:]
    assert f"resumed from {out_dir / 'resume.pt'}" in stderr
    got = checkpoint_weights(out_dir / "checkpoint.pt")
    assert got.keys() == expected.keys() and got["steps"] == expected["steps"]
    for name, tensor in expected.items():
        if name != "steps":
            assert torch.equal(got[name], tensor), f"{name} differs from the uninterrupted run"
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "step"] == list(range(expected["steps"]))


def test_a_stop_signal_while_the_finished_training_exits_does_not_fail_the_job(setup, tmp_path):
    """SLURM's warning can come just after the last step, while the process that wrote every output exits: the job
    ends with status 0 (killed by the signal, it would fail and be resubmitted to write the same outputs again)."""
    root, _, _ = setup
    out_dir = tmp_path / "finished"
    exp = experiment(epochs=1, batch_size=8)
    # The signal comes at the interpreter's exit, after the command has returned.
    script = (
        "import atexit, os, signal, sys; from genview.cli import main; "
        "atexit.register(os.kill, os.getpid(), signal.SIGTERM); sys.exit(main(sys.argv[1:]))"
    )
    args = pretrain_run_args(exp, out_dir, root / "manifest.csv", "--device", "cpu", "--num-workers", "0")
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"exit status {run.returncode}\n{run.stderr[-3000:]}"
    assert (out_dir / "checkpoint.pt").is_file() and (out_dir / "metrics.jsonl").is_file()
