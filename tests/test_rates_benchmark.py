"""benchmarks/rates.py runs on the CPU with small sizes and writes a rates file that `genview config estimate`
accepts and credits to the device. Speed itself is never asserted: only that every phase ran and wrote its rate."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers import REPO

from genview.config.load import load_config_files

SMALL = [
    "--tiny",
    "--device",
    "cpu",
    "--images",
    "2",
    "--official-images",
    "1",
    "--steps",
    "2",
    "--gen-batch",
    "2",
    "--encoder-batch",
    "2",
    "--encoder-repeats",
    "1",
    "--captions",
    "1",
    "--max-new-tokens",
    "4",
    "--train-steps",
    "1",
    "--train-batch",
    "2",
    "--train-image-size",
    "32",
    "--workers",
    "0",
    "--source-size",
    "64",
    "--unique-images",
    "4",
    "--peak-flops",
    "1e12",
]


@pytest.mark.slow
def test_the_rates_of_the_paper_experiments_are_measured_and_the_estimate_uses_them(tmp_path):
    out = tmp_path / "rates.yaml"
    result = subprocess.run(
        [
            sys.executable,
            REPO / "benchmarks/rates.py",
            "--config",
            REPO / "config/paper.yaml",
            "--out",
            out,
            *SMALL,
            "--experiments",
            "imagenet1k_simclr_genview",
            "cc3m_clip_views",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "skipped" not in result.stdout, result.stdout
    document = yaml.safe_load(out.read_text())
    rates, source = document["estimate"]["rates"], document["estimate"]["rates_from"]
    assert set(rates) == {
        "generation_image_steps_per_second",
        "foreground_images_per_second",
        "quality_images_per_second",
        "llm_captions_per_second",
        "pretrain_images_per_second",
        "loader_views_per_second_per_core",
        "feature_images_per_second",
        "linear_images_per_second",
    }
    assert all(value > 0 for value in rates.values() if not isinstance(value, dict))
    # measured augmentations (simclr for SimCLR, genviewpp for CLIP), and the config's rates for the others
    assert set(rates["loader_views_per_second_per_core"]) == {
        "simclr",
        "mocov2",
        "byol",
        "genviewpp",
        "plain",
        "device",
    }
    assert {"loader_views_per_second_per_core.simclr", "loader_views_per_second_per_core.genviewpp"} <= set(
        source["measured"]
    )
    # measured backbones, and the config's rates for the others
    assert set(rates["pretrain_images_per_second"]) == {"resnet18", "resnet50", "vit", "vit_small", "vit_base"}
    assert {"pretrain_images_per_second.resnet50", "pretrain_images_per_second.vit_base"} <= set(source["measured"])
    assert "pretrain_images_per_second.vit_small" not in source["measured"]
    assert source["device"].startswith("CPU") and "tiny random-weight stand-ins" in source["notes"]

    details = json.loads(out.with_suffix(".details.json").read_text())
    for name in ("ic", "tc", "itc"):
        generation = details["generation"][name]
        assert generation["gflops_per_image_step"] > 0 and generation["fraction_of_limit"] > 0
        assert generation["ours_over_official"] > 0
    trained = details["pretrain"]
    assert set(trained) == {"imagenet1k_simclr_genview", "cc3m_clip_views"}
    assert trained["imagenet1k_simclr_genview"]["views_per_sample"] == 2
    assert trained["cc3m_clip_views"]["views_per_sample"] == 4
    assert all(run["model_steps_per_second"] > 0 and run["input_steps_per_second"] > 0 for run in trained.values())
    assert all(run["cores_to_feed_the_model"] > 0 for run in trained.values())

    config = load_config_files([REPO / "config/paper.yaml", out])  # what the estimate reads
    assert config["estimate"]["rates"]["pretrain_images_per_second"] == rates["pretrain_images_per_second"]
    estimate = subprocess.run(
        [sys.executable, "-m", "genview", "config", "estimate", REPO / "config/paper.yaml", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert estimate.returncode == 0, estimate.stderr[-2000:]
    assert f"Rates: measured on {source['device']} ({source['date']}" in estimate.stdout
    assert "pretrain_images_per_second.resnet50" in estimate.stdout
