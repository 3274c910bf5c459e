"""GPU problems a user meets on a cluster, simulated on this CPU machine: a job given a GPU that torch cannot use
fails with what torch reports (instead of a silent CPU run), and a GPU out-of-memory error in a command becomes one
message naming the command, the batch size, the device memory and what to lower."""

import os
import re
import subprocess

import pandas as pd
import pytest
import torch
from helpers import (
    evaluation_cached_args,
    evaluation_run_args,
    generation_views_args,
    genview_command,
    indexed_shapes,
    one_experiment_config,
    pretrain_run_args,
)

from genview.cli import main
from genview.config.load import validate_config
from genview.errors import GenviewError
from genview.runtime.devices import device_memory, resolve_device

DRIVER_TOO_OLD = "The NVIDIA driver on your system is too old (found version 11040)."


@pytest.fixture
def no_usable_cuda(monkeypatch):
    """torch as on a node whose driver is older than the CUDA torch was built for."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def init():
        raise RuntimeError(DRIVER_TOO_OLD)

    monkeypatch.setattr(torch.cuda, "init", init)


def test_a_job_given_a_gpu_that_torch_cannot_use_fails_with_what_torch_reports(no_usable_cuda):
    with pytest.raises(GenviewError) as caught:
        resolve_device("auto", {"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_ID": "42"})
    message = str(caught.value)
    assert message.startswith(
        "this job was given GPU(s) (CUDA_VISIBLE_DEVICES=1, set by SLURM job 42) but torch cannot use them:"
    )
    assert f"torch {torch.__version__} (built for CUDA {torch.version.cuda or 'none: a CPU-only build'})" in message
    assert "torch.cuda.is_available() False" in message and DRIVER_TOO_OLD in message
    assert "GENVIEW_DEVICE=cpu" in message
    with pytest.raises(
        GenviewError, match=f"'cuda:0' requested but CUDA is not available here: .*{re.escape(DRIVER_TOO_OLD)}"
    ):
        resolve_device("cuda:0", {})


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"CUDA_VISIBLE_DEVICES": ""},
        {"CUDA_VISIBLE_DEVICES": "-1"},
        {"CUDA_VISIBLE_DEVICES": "0", "GENVIEW_DEVICE": "cpu"},
    ],
)
def test_a_job_given_no_gpu_or_told_to_use_the_cpu_runs_on_the_cpu(no_usable_cuda, environ):
    assert resolve_device("auto", environ) == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch can use this machine's GPU")
def test_a_leased_gpu_that_torch_cannot_use_stops_the_command(tmp_path):
    """The real path: `--gpus 1` leases a device of the (simulated) inventory, and the command refuses to run on
    the CPU; exit status 2 and one line."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "GENVIEW_DEVICE")}
    env.update(GENVIEW_GPUS="1", GENVIEW_GPU_LEASE_DIR=str(tmp_path / "leases"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        genview_command("--gpus", "1", *pretrain_run_args("{}", "o", "m.csv")),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "genview pretrain: error: this job was given GPU(s) (CUDA_VISIBLE_DEVICES=0) but torch cannot use them: "
    ), last
    assert "torch.cuda.is_available() False" in last and "GENVIEW_DEVICE=cpu" in last


def test_the_device_memory_is_shown_when_cuda_answers(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 76.5 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA A100-SXM4-80GB")
    assert device_memory("cuda:0") == (
        "NVIDIA A100-SXM4-80GB (cuda:0): 80.0 GiB, 3.0 GiB free, 76.5 GiB at this job's peak"
    )
    assert device_memory("cpu") == "cpu (memory unknown)"


def out_of_memory(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.2 GiB total)")


def error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_out_of_memory_in_a_generation_batch(tmp_path, monkeypatch, capsys):
    import genview.generation.views
    import genview.models.diffusion

    monkeypatch.setattr(genview.models.diffusion, "load_pipeline", lambda *args: object())
    monkeypatch.setattr(genview.generation.views, "run_pipeline", out_of_memory)
    pd.DataFrame(
        {
            "id": ["a", "b"],
            "path": ["a.png", "b.png"],
            "caption": ["a red square", "a blue disc"],
            "label": "",
            "split": "train",
            "mask": "",
        }
    ).to_csv(tmp_path / "shard.csv", index=False)
    generation = validate_config({"generation": {"batch_size": 6, "tc": {"guidance_scale": 7}}})["generation"]
    rc = main(
        generation_views_args(
            "tc", tmp_path / "shard.csv", tmp_path / "v", tmp_path / "v.csv", generation, "{}", "--device", "cpu"
        )
    )
    assert rc == 2
    assert error_line(capsys) == (
        "genview generation: error: generation views (rule generate_views): out of GPU memory at batch size 6 on cpu "
        "(memory unknown); lower generation.batch_size (images per pipeline call; a change regenerates the views, "
        "since batched CUDA kernels may change pixels) "
        "(CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.2 GiB total))"
    )


def test_out_of_memory_in_a_training_step(tmp_path, monkeypatch, capsys):
    from genview.training.experiments import resolve_experiments
    from genview.training.train import Trainer

    monkeypatch.setattr(Trainer, "step", out_of_memory)
    indexed_shapes(tmp_path, train_per_class=1)
    config = one_experiment_config(
        "simclr",
        {"epochs": 1, "batch_size": 8, "image_size": 16, "num_workers": 0},
        {"name": "vit", "image_size": 16, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2},
        method_args={"simclr": {"proj_hidden_dim": 32, "proj_dim": 16}},
    )
    experiment = resolve_experiments(config)["e"]
    rc = main(pretrain_run_args(experiment, tmp_path / "out", tmp_path / "manifest.csv", "--device", "cpu"))
    assert rc == 2
    line = error_line(capsys)
    assert line.startswith(
        "genview pretrain: error: pretrain run e (rule pretrain): out of GPU memory at batch size 8"
        " on cpu (memory unknown); lower the recipe's batch_size"
    ), line
    assert "recipe amp: bf16" in line


def test_out_of_memory_in_feature_extraction_and_in_a_probe(tmp_path, monkeypatch, capsys):
    import genview.evaluation.features
    import genview.evaluation.protocols

    monkeypatch.setattr(genview.evaluation.features, "extract_features", out_of_memory)
    rc = main(
        evaluation_cached_args(
            "c.pt", "m.csv", "d", "e", "{}", "f.npz", "r.json", "--batch-size", "512", "--device", "cpu"
        )
    )
    assert rc == 2
    assert error_line(capsys).startswith(
        "genview evaluation: error: evaluation cached (rule evaluate_cached): out of GPU memory at batch size 512 on "
        "cpu (memory unknown); lower evaluation.batch_size (images per feature batch) (CUDA out of memory."
    )
    monkeypatch.setattr(genview.evaluation.protocols, "evaluate", out_of_memory)
    rc = main(
        evaluation_run_args(
            "linear", "e", "c.pt", "d", "{}", "f.npz", '{"batch_size": 1024}', "r.json", "--device", "cpu"
        )
    )
    assert rc == 2
    assert error_line(capsys).startswith(
        "genview evaluation: error: evaluation run linear (rule evaluate): out of GPU memory at batch size 1024 on cpu "
        "(memory unknown); lower evaluation.linear.batch_size (or the run's settings.linear)"
    )


def test_other_errors_pass_through_unchanged(monkeypatch):
    from genview.runtime.devices import out_of_memory_advice

    with pytest.raises(RuntimeError, match="^shapes do not match$"):
        with out_of_memory_advice("x", batch_size=1, lower="y", device="cpu"):
            raise RuntimeError("shapes do not match")
