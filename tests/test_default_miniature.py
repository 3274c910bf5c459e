"""The embedded default at reduced size, run for real: its ground-truth checks must show the relationships the method
rests on (relationships, not timings or exact values): the trained encoder finds the foreground far better than a
random one; IC views keep their source's class less often as the noise rises, TC views follow their caption more at
higher guidance; the quality score ranks faithful views above class-changed ones; pre-training beats the random
initialisation of the same backbone."""

import json

import pytest
import yaml
from conftest import snakemake

from genview.evaluation.runs import read_result

pytestmark = pytest.mark.workflow

# One SimCLR training and its random initialisation, one seed, the fast linear probe; views, analysis, encoder and
# checks as in the default (config/config.yaml), minus the tables and figures that need the other experiments.
MINIATURE = {
    "derive": {"from": "config/config.yaml"},
    "pretrain": {
        "matrix": [
            {
                "methods": ["simclr"],
                "variants": ["baseline"],
                "recipe": "ssl",
                "backbone": "conv",
                "dataset": "shapes",
                "seeds": [0],
                "method_args": {"simclr": {"proj_hidden_dim": 128, "proj_dim": 64}},
            },
            {
                "methods": ["simclr"],
                "variants": ["baseline"],
                "recipe": "untrained",
                "backbone": "conv",
                "dataset": "shapes",
                "seeds": [0],
                "name": "{dataset}_{method}_random_s{seed}",
            },
        ]
    },
    "evaluation": {"runs": [{"protocols": ["linear_fast"], "experiments": ["*"], "datasets": ["shapes"]}]},
    "report": {"tsne": None, "gallery": None, "quality_audit": None, "cost": False},
}
TABLES = {
    "learning": {
        "title": "miniature",
        "caption": "miniature",
        "row_label": "Method",
        "compare_to": "baseline",
        "cell": {"protocol": "linear_fast", "dataset": "shapes", "metric": "top1"},
        "columns": [{"key": "random", "label": "Random init"}, {"key": "baseline", "label": "Baseline"}],
        "rows": [
            {
                "label": "SimCLR",
                "cells": {
                    "random": {"experiment": "shapes_simclr_random_s0"},
                    "baseline": {"experiment": "shapes_simclr_baseline_s0"},
                },
            }
        ],
    }
}


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("miniature")
    config = {**MINIATURE, "report": {**MINIATURE["report"], "tables": str(workdir / "tables.yaml")}}
    (workdir / "miniature.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "tables.yaml").write_text(yaml.safe_dump(TABLES, sort_keys=False))
    config = ["--configfile", workdir / "miniature.yaml"]
    snakemake("results/checks/ground_truth.json", "--cores", "all", *config, workdir=workdir, timeout=1800)
    return workdir, json.loads((workdir / "results/checks/ground_truth.json").read_text())


def test_the_trained_encoder_finds_the_foreground_a_random_one_does_not(miniature):
    _, checks = miniature
    assert checks["foreground"]["iou_trained"] > checks["foreground"]["iou_random"] + 0.2


def test_ic_views_keep_the_class_less_often_as_the_noise_rises(miniature):
    _, checks = miniature
    by_noise = {int(level): rate["class_kept"] for level, rate in checks["views"]["ic"]["by_noise_level"].items()}
    levels = sorted(by_noise)
    assert by_noise[levels[0]] >= 0.9 and by_noise[levels[-1]] < by_noise[levels[0]] - 0.2


def test_tc_views_follow_a_caption_naming_the_class_more_at_higher_guidance(miniature):
    _, checks = miniature
    tc = checks["views"]["tc"]
    by_guidance = {float(g): rate["class_kept"] for g, rate in tc["by_guidance_scale_class_named"].items()}
    assert by_guidance[max(by_guidance)] > by_guidance[min(by_guidance)] + 0.1
    assert tc["class_kept_class_not_named"] < 0.3  # a caption that names no shape gives any class


def test_the_quality_score_ranks_faithful_views_above_class_changed_ones(miniature):
    _, checks = miniature
    assert checks["quality"]["auc"] > 0.65


def test_pretraining_beats_the_random_initialisation(miniature):
    workdir, checks = miniature
    (row,) = checks["learning"]
    trained, random = (
        read_result(f"shapes_simclr_{name}_s0", "linear_fast", "shapes", root=str(workdir / "results/eval"))
        for name in ("baseline", "random")
    )
    assert row["baseline"]["mean"] == pytest.approx(trained["metrics"]["top1"], abs=0.01) and row["learned"]
    assert trained["metrics"]["top1"] > random["metrics"]["top1"] + 8
