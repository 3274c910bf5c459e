"""The GPU-hour estimate, re-computed by hand for a small config."""

import pytest

from genview.config import validate_config
from genview.errors import ConfigError
from genview.estimate import estimate_gpu_hours
from genview.evaluation.runs import resolve_evaluations
from genview.training.experiments import resolve_experiments

RATES = dict(
    generation_image_steps_per_second=10,
    foreground_images_per_second=100,
    llm_captions_per_second=2,
    pretrain_images_per_second={"vit": 50},
    quality_images_per_second=200,
    feature_images_per_second=400,
    linear_images_per_second=100,
)


def small_config(scorer="llm"):
    return validate_config(
        {
            "datasets": {"s": {"kind": "shapes", "num_shards": 2, "sources": ["ic", "tc"]}},
            "analysis": {"complexity_scorer": scorer},
            "generation": {"steps": 5},
            "pretrain": {
                "recipes": {"r": {"epochs": 3, "batch_size": 8}},
                "backbones": {"b": {"name": "vit"}},
                "experiments": {
                    "ssl": {"method": "simclr", "variant": "baseline", "recipe": "r", "backbone": "b", "dataset": "s"},
                    "vl": {
                        "method": "clip",
                        "variant": "genview",
                        "recipe": "r",
                        "backbone": "b",
                        "dataset": "s",
                        "views": {"n_views": 4},
                    },
                },
            },
            "evaluation": {
                "runs": [{"protocols": ["linear", "knn"], "experiments": ["*"], "datasets": ["s"]}],
                "linear": {"epochs": 7},
            },
            "estimate": {"rates": RATES},
        }
    )


def test_estimate_by_hand():
    config = small_config()
    experiments = resolve_experiments(config)
    evaluations = resolve_evaluations(config, experiments)
    table = estimate_gpu_hours(config, experiments, evaluations, {"s": 1000}, {"clip"}).set_index("stage")
    hours = table["gpu_hours"] * 3600
    assert hours["analysis (foreground)"] == pytest.approx(1000 / 100)
    assert hours["analysis (caption complexity)"] == pytest.approx(1000 / 2)
    assert hours["generation"] == pytest.approx(1000 * 2 * 5 / 10)  # two sources, five steps each
    simclr, clip = 1000 * 3 * 2 / 50, 1000 * 3 * 4 / 50 + 1000 * 3 * 4 / 200  # clip genview adds the quality encoder
    assert hours["pre-training"] == pytest.approx(simclr + clip)
    assert hours["evaluation (features)"] == pytest.approx(2 * 1000 / 400)  # one cache per experiment, not per protocol
    assert hours["evaluation (linear)"] == pytest.approx(2 * 1000 * 7 / 100)
    assert "evaluation (knn)" not in hours
    assert table.loc["total", "gpu_hours"] == pytest.approx(table["gpu_hours"].drop("total").sum())
    assert table.loc["generation", "jobs"] == 4 and table.loc["pre-training", "jobs"] == 2


def test_missing_counts_and_rates_are_named():
    config = small_config(scorer="lexical")
    experiments = resolve_experiments(config)
    with pytest.raises(ConfigError, match="no image count for dataset 's'"):
        estimate_gpu_hours(config, experiments, [], {}, {"clip"})
    config["estimate"]["rates"]["pretrain_images_per_second"] = {"resnet50": 1}
    with pytest.raises(ConfigError, match="no rate for backbone 'vit'"):
        estimate_gpu_hours(config, experiments, [], {"s": 10}, {"clip"})
