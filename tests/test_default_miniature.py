"""The embedded default at reduced size, run for real (one SimCLR baseline and GenView training, its random
initialisation): the goals its ground-truth checks measure on the data side (foreground, noise levels, the pixel judge,
quality scores, training weights) pass at the thresholds docs/method.md gives, and each fails when its mechanism is
broken on purpose (a flipped foreground sign; a quality scorer fed another image's tokens)."""

import json

import pandas as pd
import pytest
import torch
import yaml
from helpers import snakemake

from genview.contracts import VIEWS
from genview.evaluation.runs import read_result
from genview.report.checks import GOALS, check_goal, foreground_checks, quality_auc

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

# One SimCLR training and its random initialisation, one seed, the fast linear probe; views, analysis, encoder and
# checks as in the default (config/config.yaml), minus the tables and figures that need the other experiments.
MINIATURE = {
    "derive": {"from": "config/config.yaml"},
    "pretrain": {
        "matrix": [
            {
                "methods": ["simclr"],
                "variants": ["baseline", "genview"],
                "recipe": "ssl",
                "backbone": "conv",
                "dataset": "shapes",
                "seeds": [0],
                "views": {"sources": ["ic"]},
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
    "report": {
        "tsne": None,
        "gallery": None,
        "quality_audit": None,
        "cost": False,
        "checks": {
            "dataset": "shapes",
            "learning_table": "learning",
            "zeroshot_table": None,
            # A merge patch: null removes the default's other roles.
            "learning_columns": {"supervised": None, "views": None, "genview": None},
        },
    },
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


# The data-side goals the default passes (docs/method.md, section 6.4). The quality score's within-level AUC is not
# among them: it fails in the default (the score barely tells class-changed views from faithful ones in this world);
# the test below checks that it measures something all the same.
PASSING_GOALS = [
    "foreground_iou",
    "foreground_iou_over_all_foreground",
    "noise_level_agreement",
    "foreground_ratio_correlation",
    "judge_test_accuracy",
    "judge_agrees_with_records",
    "training_weight_ratio",  # SimCLR only here: its weights give class-changed pairs less
]


@pytest.mark.parametrize("name", PASSING_GOALS)
def test_each_goal_of_the_data_side_passes_at_its_documented_threshold(miniature, name):
    _, checks = miniature
    (entry,) = [g for g in checks["goals"] if g.get("key") == name]
    assert entry["passed"] is True, entry
    assert entry["threshold"] == GOALS[name][0]


def test_the_analysis_encoder_beats_one_trained_without_masks_and_a_random_one(miniature):
    _, checks = miniature
    ious = checks["foreground"]["fit_sample_iou"]
    assert ious["analysis_encoder"] > ious["trained_without_masks_or_labels"] + 0.1
    assert ious["analysis_encoder"] > ious["random_initialisation"] + 0.2


def test_a_flipped_foreground_fails_the_foreground_and_adaptive_checks(miniature, tmp_path, monkeypatch):
    """PC-1 taken with the other sign than the fit chose: the masks cover the background, so the IoU falls and the
    noise levels no longer follow the objects' sizes."""
    from genview.analysis.foreground import fit_foreground, foreground_shard, load_fit

    workdir, _ = miniature
    monkeypatch.chdir(workdir)  # the manifests' image paths are relative to the run's folder
    encoder = {"model": f"local-dir:{workdir}/results/models/trained/encoder"}
    manifest = workdir / "results/data/shapes/manifest.csv"
    chosen = load_fit(workdir / "results/analysis/shapes/fg_pca.npz")["sign"]
    fit_foreground(manifest, encoder, tmp_path / "fit.npz", tmp_path / "o.png", sign=-int(chosen), seed=0)
    edges, levels = [0.2, 0.4, 0.6, 0.8], [0, 100, 200, 300, 400]
    parts = []
    for shard in sorted((workdir / "results/data/shapes/shards").glob("*.csv")):
        parts.append(tmp_path / shard.name)
        foreground_shard(shard, tmp_path / "fit.npz", encoder, parts[-1], noise_edges=edges, noise_levels=levels)
    flipped = foreground_checks(parts, manifest, edges, levels)
    assert check_goal("foreground_iou", flipped["iou"])["passed"] is False
    assert check_goal("noise_level_agreement", flipped["level_agreement"])["passed"] is False
    assert check_goal("foreground_ratio_correlation", flipped["ratio_correlation"])["passed"] is False


def test_a_quality_scorer_fed_another_images_tokens_loses_what_the_honest_one_measures(
    miniature, monkeypatch, tmp_path
):
    """IC views of one shard at constant noise 300 and 400, where most objects lose their class: within each level,
    the honest score ranks faithful views above class-changed ones more often than chance; with each image's token
    map swapped for another image's of the batch, q no longer describes the pair and the AUC falls to chance."""
    from genview.config.load import validate_config
    from genview.generation.views import generate_shard
    from genview.models.diffusion import load_pipeline
    from genview.quality.encoder import QualityScorer
    from genview.report.quality_audit import read_pairs, score_pairs

    workdir, _ = miniature
    monkeypatch.chdir(workdir)
    generation = validate_config({"generation": {"steps": 1, "batch_size": 64, "save_size": 32}})["generation"]
    shard = "results/data/shapes/shards/0.csv"
    ids = pd.read_csv(shard, dtype=str)["id"]
    views = []
    for level in (300, 400):
        views.append(tmp_path / f"{level}.csv")
        generate_shard(
            source="ic",
            shard_csv=shard,
            params=pd.DataFrame({"id": ids, "noise_level": level, "guidance_scale": 10.0}),
            views_dir=tmp_path / str(level),
            out_manifest=views[-1],
            seed=0,
            generation=generation,
            pipeline=load_pipeline("unclip", {"renderer": "shapes", "dataset": "shapes"}),
        )
    pairs = pd.concat([read_pairs([path], "results/data/shapes/manifest.csv", 600, 0) for path in views])
    truth = pd.concat([VIEWS.read(path) for path in views])[["view", "noise_level", "guidance_scale", "class_changed"]]
    pairs = pairs.merge(truth, on="view")
    scorer = QualityScorer(
        {"image_size": None, "model": "local-dir:results/models/trained/encoder", "pretrained": None},
        "results/analysis/shapes/quality_pca.npz",
    )
    honest = quality_auc(pairs.assign(quality=score_pairs(pairs, scorer)))["within_strata"]
    features = scorer.features
    generator = torch.Generator().manual_seed(0)

    def shuffled(images):
        token_map, embedding = features(images)
        return token_map[torch.randperm(len(token_map), generator=generator)], embedding

    monkeypatch.setattr(scorer, "features", shuffled)
    broken = quality_auc(pairs.assign(quality=score_pairs(pairs, scorer)))["within_strata"]
    # Measured on the default's world: honest 0.55, shuffled 0.50 (1,200 pairs; the AUC's standard error is 0.02).
    assert honest > broken + 0.03 and abs(broken - 0.5) < 0.05, (honest, broken)


def test_pretraining_beats_the_random_initialisation(miniature):
    workdir, checks = miniature
    trained, random = (
        read_result(f"shapes_simclr_{name}_s0", "linear_fast", "shapes", root=str(workdir / "results/eval"))
        for name in ("baseline", "random")
    )
    assert trained["metrics"]["top1"] > random["metrics"]["top1"] + 8
