"""The training loop: schedules, batches, exact resume after a real kill, DDP, non-finite losses."""

import copy
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import (
    TINY_METHOD_ARGS,
    genview_command,
    indexed_shapes,
    one_experiment_config,
    pretrain_run_args,
    tiny_experiment,
)

from genview.config.load import validate_config
from genview.errors import GenviewError
from genview.training.data import PretrainDataset, epoch_indices
from genview.training.experiments import resolve_experiments
from genview.training.schedules import ema_momentum, learning_rate
from genview.training.train import train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 training images of `shapes`, and a view manifest whose 'generated' views are other real images."""
    root = tmp_path_factory.mktemp("train")
    manifest = indexed_shapes(root, train_per_class=2)
    train_rows = manifest[manifest.split == "train"]
    views = pd.DataFrame(
        {"id": train_rows.id, "view": np.roll(train_rows.path.to_numpy(), 1), "source": "ic", "sample": 0}
    )
    views.to_csv(root / "views.csv", index=False)
    return root


# Execution settings of the tests' runs (in the workflow they come from the rule's resources).
EXECUTION = {"num_workers": 0, "save_every_epochs": 1, "save_every_steps": 0, "max_nonfinite_in_row": 20}


def execution_options(**overrides):
    return [f"--{key.replace('_', '-')}={value}" for key, value in {**EXECUTION, **overrides}.items()]


def run_training(data, exp, out, execution=None, **kwargs):
    train(
        exp,
        out,
        manifest=str(data / "manifest.csv"),
        view_manifests=[str(data / "views.csv")],
        execution={**EXECUTION, **(execution or {})},
        **kwargs,
    )
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_learning_rate_schedule_plainly():
    kwargs = dict(base_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.0)
    assert learning_rate(0, **kwargs) == 0.0 and learning_rate(5, **kwargs) == 0.5
    assert learning_rate(10, **kwargs) == 1.0 and learning_rate(60, **kwargs) == pytest.approx(0.5)
    assert learning_rate(110, **kwargs) == pytest.approx(0.0, abs=1e-12)
    assert ema_momentum(0, base=0.99, total_steps=100, schedule="cosine") == pytest.approx(0.99)
    assert ema_momentum(100, base=0.99, total_steps=100, schedule="cosine") == pytest.approx(1.0)
    assert ema_momentum(50, base=0.99, total_steps=100, schedule="constant") == 0.99


def test_epoch_indices_split_global_batches_between_ranks():
    single = epoch_indices(50, 8, seed=1, epoch=2, rank=0, world=1)
    ranks = [epoch_indices(50, 8, seed=1, epoch=2, rank=r, world=2) for r in (0, 1)]
    assert len(single) == 48 and len(set(single)) == 48
    for step in range(6):  # each global batch is the two ranks' local batches, in rank order
        assert single[step * 8 : step * 8 + 8] == ranks[0][step * 4 : step * 4 + 4] + ranks[1][step * 4 : step * 4 + 4]
    assert epoch_indices(50, 8, 1, 3, 0, 1) != single


def test_genview_slot_rule_and_vision_language_views(data):
    rows = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    rows = rows[rows.split == "train"]
    generated = dict(zip(rows.id, np.roll(rows.path.to_numpy(), 1)))  # 'generated' = another real image
    views = {"ic": {image_id: [path] for image_id, path in generated.items()}}
    dataset = PretrainDataset(
        rows,
        mode="two_view",
        augmentation_preset="simclr",
        image_size=16,
        min_scale=0.5,
        seed=0,
        views=views,
        sources=["ic"],
    )
    asked = []
    dataset._views = lambda items: asked.append(items) or [None] * len(items)
    slots = []
    for index, row in enumerate(rows.itertuples()):
        dataset[index]
        (path1, pipeline1), (path2, pipeline2) = asked[-1]
        assert (pipeline1, pipeline2) == tuple(dataset.pipelines)  # each slot has its own pipeline
        assert sorted([path1, path2]) == sorted([row.path, generated[row.id]])  # one slot takes the generated view
        slots.append(path1 == generated[row.id])
    assert 0 < sum(slots) < len(slots)  # either slot, chosen per sample
    del dataset._views
    vl = PretrainDataset(
        rows,
        mode="vision_language",
        augmentation_preset="simclr",
        image_size=16,
        min_scale=0.5,
        seed=0,
        views=views,
        sources=["ic"],
        n_views=3,
        syn_ratio=0.0,
    )
    stacked, caption, real, index = vl[0]
    assert stacked.shape == (3, 3, 16, 16) and real.shape == (3, 16, 16) and caption == rows.caption.iloc[0]
    assert stacked.dtype == real.dtype == torch.uint8  # scaled to [0, 1] on the training device
    first, again = dataset[3], dataset[3]
    assert torch.equal(first[0], again[0]) and torch.equal(
        first[1], again[1]
    )  # a pure function of (seed, epoch, index)


def test_checkpoint_and_metrics(data, tmp_path):
    exp = tiny_experiment("simclr")
    checkpoint = run_training(data, exp, tmp_path)
    assert checkpoint["format"] == 1 and checkpoint["steps"] == 3 * 3 and checkpoint["experiment"] == exp
    assert set(checkpoint["backbone"]) and checkpoint["feature_dim"] == 16
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "step"] == list(range(9))
    assert sum(r["type"] == "epoch" for r in records) == 3


def _weights_equal(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(data, tmp_path):
    """A real SIGKILL mid-epoch; the resumed run ends with the weights of an uninterrupted run."""
    exp = tiny_experiment("mocov2", "views", epochs=4)
    reference = run_training(data, exp, tmp_path / "reference")
    out = tmp_path / "killed"
    command = genview_command(
        *pretrain_run_args(
            exp,
            out,
            data / "manifest.csv",
            "--device",
            "cpu",
            *execution_options(save_every_steps=2),
            views=data / "views.csv",
        )
    )
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics, deadline = out / "metrics.partial.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and sum(1 for line in metrics.read_text().splitlines() if '"step"' in line) >= 5:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / "resume.pt").is_file() and not (out / "checkpoint.pt").exists(), "kill must land mid-run"
    (out / "config.yaml").unlink()  # as Snakemake does with the outputs of an interrupted job
    # Execution settings may change between the runs (more loader workers, another resume-point cadence).
    command = command[: -len(EXECUTION)] + execution_options(num_workers=1, save_every_steps=3)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert _weights_equal(final["method"], reference["method"])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert sorted(steps) == steps and sum('"type": "step"' in line for line in lines) == final["steps"]


def test_stale_resume_point_is_not_used_and_a_finished_one_rewrites_the_outputs(data, tmp_path, caplog):
    exp = tiny_experiment("simclr", epochs=1)
    first = run_training(data, exp, tmp_path)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    for name in ("checkpoint.pt", "metrics.jsonl", "config.yaml"):  # Snakemake reruns the job: outputs removed
        (tmp_path / name).unlink()
    again = run_training(data, exp, tmp_path)
    assert _weights_equal(again["method"], first["method"]) and (tmp_path / "metrics.jsonl").read_text() == metrics
    manifest = data / "manifest.csv"
    rows = manifest.read_text().splitlines()
    manifest.write_text("\n".join(rows[:-1]) + "\n")  # the inputs changed upstream
    try:
        (tmp_path / "checkpoint.pt").unlink()
        caplog.clear()
        with caplog.at_level("INFO", logger="genview"):
            run_training(data, exp, tmp_path)
        assert "made from other input files" in caplog.text and "resumed from" not in caplog.text
    finally:
        manifest.write_text("\n".join(rows) + "\n")


def test_a_resume_point_of_another_gpu_count_is_not_used(data, tmp_path, caplog):
    """The GPU count is part of the experiment (per-GPU batch statistics change the result): a resume point made
    with another count starts the training over, while execution settings never enter the comparison."""
    exp = tiny_experiment("simclr", epochs=2)
    run_training(data, exp, tmp_path)
    (tmp_path / "checkpoint.pt").unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="genview"):
        run_training(data, {**exp, "gpus": 2}, tmp_path)
    assert "made by another configuration" in caplog.text and "resumed from" not in caplog.text


def test_nonfinite_losses_are_skipped_then_abort(data, tmp_path):
    exp = tiny_experiment("simclr", lr=1e38, epochs=5)
    with pytest.raises(GenviewError, match=r"3 non-finite losses in a row"):
        run_training(data, exp, tmp_path, execution={"max_nonfinite_in_row": 3})
    records = [json.loads(line) for line in (tmp_path / "metrics.partial.jsonl").read_text().splitlines()]
    assert any(r.get("skipped") for r in records)
    assert not (tmp_path / "metrics.jsonl").exists(), "metrics.jsonl is written only by a finished run"


def test_batch_larger_than_dataset_is_a_clear_error(data, tmp_path):
    with pytest.raises(GenviewError, match="cannot fill one batch"):
        run_training(data, tiny_experiment("simclr", batch_size=64), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "clip"])
def test_two_process_ddp_run(data, tmp_path, method):
    exp = tiny_experiment(method, epochs=1)
    single = run_training(data, copy.deepcopy(exp), tmp_path / "single")
    out = tmp_path / "ddp"
    result = subprocess.run(
        genview_command(
            *pretrain_run_args(
                exp,
                out,
                data / "manifest.csv",
                "--device",
                "cpu",
                "--nproc",
                "2",
                *execution_options(),
                views=data / "views.csv",
            )
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ddp.keys() == single.keys() and ddp["method"].keys() == single["method"].keys()
    assert ddp["steps"] == single["steps"]


@pytest.mark.parametrize("config_name", ["smoke.yaml", "paper.yaml"])
def test_every_configured_experiment_names_a_method_and_valid_options(config_name):
    from helpers import REPO

    from genview.config.load import load_config
    from genview.methods import method_class

    experiments = resolve_experiments(load_config(REPO / "config" / config_name))
    assert experiments
    for name, exp in experiments.items():
        cls = method_class(exp["method"])
        assert set(exp["method_args"]) <= set(cls.default_options), name
    variants = {(exp["method"], exp["variant"]) for exp in experiments.values()}
    methods = {exp["method"] for exp in experiments.values()}
    assert methods == {"simclr", "mocov2", "byol", "simsiam", "swav", "mocov3", "clip", "slip"}
    every = {(m, v) for m in methods for v in ("baseline", "views", "genview")}
    if config_name == "paper.yaml":
        assert variants == every
    else:  # every method with GenView; SimCLR and CLIP in every variant
        assert variants == {(m, "genview") for m in methods} | {(m, v) for m, v in every if m in ("simclr", "clip")}


def test_experiment_errors_name_the_key():
    from genview.errors import ConfigError

    config = validate_config(
        {
            "datasets": {"s": {"kind": "shapes", "sources": ["ic"]}},
            "pretrain": {
                "recipes": {"r": {"epochs": 1, "batch_size": 8}},
                "backbones": {"b": {"name": "vit"}},
                "matrix": [
                    {"methods": ["simclr"], "variants": ["views"], "recipe": "nope", "backbone": "b", "dataset": "s"}
                ],
            },
        }
    )
    with pytest.raises(ConfigError, match=r"pretrain.matrix\[0\].recipe: 'nope' is not a key of pretrain.recipes"):
        resolve_experiments(config)
    config["pretrain"]["matrix"][0].update(
        recipe="r", views={**config["pretrain"]["matrix"][0]["views"], "sources": ["tc"]}
    )
    with pytest.raises(ConfigError, match=r"views.sources: \['tc'\] not generated for dataset 's'"):
        resolve_experiments(config)


@pytest.mark.parametrize("n_views, unused", [(2, ["tc", "itc"]), (3, ["itc"]), (4, None), (6, None)])
def test_views_per_caption_must_hold_every_source(n_views, unused):
    """View slot v draws from source v - 1: with fewer slots than 1 + sources, a source is silently never used."""
    from genview.errors import ConfigError

    config = one_experiment_config(
        "clip",
        {"epochs": 1, "batch_size": 8},
        {"name": "vit"},
        variant="genview",
        method_args=TINY_METHOD_ARGS,
        sources=["ic", "tc", "itc"],
        views={"n_views": n_views},
    )
    if unused is None:
        assert resolve_experiments(config)["e"]["views"]["sources"] == ["ic", "tc", "itc"]
        return
    message = rf"e.views.n_views: {n_views} views per caption .* sources {re.escape(str(unused))} of"
    with pytest.raises(ConfigError, match=message):
        resolve_experiments(config)
    config["pretrain"]["experiments"]["e"]["views"]["sources"] = ["ic", "tc", "itc"][: n_views - 1]
    assert resolve_experiments(config)["e"]["views"]["n_views"] == n_views


def test_seeds_make_one_experiment_per_seed_and_epochs_0_keeps_the_random_initialisation(data, tmp_path):
    config = validate_config(
        {
            "seed": 5,
            "datasets": {"s": {"kind": "shapes", "sources": ["ic"]}},
            "pretrain": {
                "recipes": {"r": {"epochs": 0, "batch_size": 8, "image_size": 16}},
                "backbones": {"b": {"name": "convnet", "width": 4, "depth": 2}},
                "matrix": [
                    {
                        "methods": ["simclr"],
                        "variants": ["baseline"],
                        "recipe": "r",
                        "backbone": "b",
                        "dataset": "s",
                        "seeds": [0, 3],
                        "method_args": TINY_METHOD_ARGS,
                    }
                ],
                "experiments": {
                    "single": {
                        "method": "simclr",
                        "variant": "baseline",
                        "recipe": "r",
                        "backbone": "b",
                        "dataset": "s",
                        "method_args": TINY_METHOD_ARGS,
                    }
                },
            },
        }
    )
    experiments = resolve_experiments(config)
    assert sorted(experiments) == ["s_simclr_baseline_s0", "s_simclr_baseline_s3", "single"]
    assert [experiments[n]["seed"] for n in sorted(experiments)] == [0, 3, 5]
    checkpoint = run_training(data, experiments["s_simclr_baseline_s3"], tmp_path)
    assert checkpoint["steps"] == 0 and (tmp_path / "metrics.jsonl").read_text() == ""
    torch.manual_seed(3)
    from genview.training.network import build_model

    initial = build_model(experiments["s_simclr_baseline_s3"]).state_dict()
    assert all(torch.equal(initial[k], checkpoint["method"][k]) for k in initial)


@pytest.mark.parametrize(
    "method, recipe",
    [("simclr", {"multi_crop": {"number": 2, "size": 8}}), ("clip", {})],
)
def test_colour_on_the_device_trains_from_8_bit_crops_and_their_colour_rows(data, tmp_path, method, recipe):
    exp = tiny_experiment(method, "views", epochs=1, augment_on="device", augmentation="simclr", **recipe)
    trainer_batches = []
    from genview.training import train as train_module

    original = train_module.color_on_device
    train_module.color_on_device = lambda images, rows, size: (
        trainer_batches.append(rows.shape) or original(images, rows, size)
    )
    try:
        checkpoint = run_training(data, exp, tmp_path)
    finally:
        train_module.color_on_device = original
    assert checkpoint["steps"] == 3
    # every step's views got their colour steps on the device: 8 rows per view batch (CLIP: 8 x 2 views at once)
    per_step = 2 + 2 if method == "simclr" else 1
    assert len(trainer_batches) == 3 * per_step and all(shape[-1] == 12 for shape in trainer_batches)
