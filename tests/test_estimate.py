"""The GPU-hour estimate, re-computed by hand for a small config."""

import copy

import pytest

from genview.config.estimate import estimate_gpu_hours, loader_shortfalls
from genview.config.load import validate_config
from genview.errors import ConfigError
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
            "estimate": {"rates": copy.deepcopy(RATES)},  # tests edit their copy
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


def test_a_loader_that_cannot_feed_the_assumed_rate_is_named():
    config = small_config()
    config["estimate"]["rates"]["loader_views_per_second_per_core"] = {"simclr": 20, "genviewpp": 10, "device": 30}
    experiments = resolve_experiments(config)
    execution = {name: {"num_workers": 2} for name in experiments}
    augmentation = {"simclr": "simclr", "clip": "genviewpp"}
    # vit at 50 views/s: simclr gets 2 cores x 20 = 40, genviewpp 2 x 10 = 20: both short
    lines = loader_shortfalls(config, experiments, execution, augmentation, cpus_per_gpu=8)
    assert len(lines) == 2
    assert (
        "ssl" in lines[0]
        and "simclr views come at 20/s per CPU core, so a GPU needs 3 loader cores and gets 2" in lines[0]
    )
    assert "vl" in lines[1] and "needs 5 loader cores" in lines[1]
    # the profile's CPUs bound the workers; enough of both feeds simclr (3 x 20 >= 50), not genviewpp (30 < 50)
    execution = {name: {"num_workers": 3} for name in experiments}
    assert len(loader_shortfalls(config, experiments, execution, augmentation, cpus_per_gpu=2)) == 2
    lines = loader_shortfalls(config, experiments, execution, augmentation, cpus_per_gpu=3)
    assert len(lines) == 1 and "vl" in lines[0]
    # colour on the device: the CPU share's own rate (2 x 30 >= 50)
    for experiment in experiments.values():
        experiment["recipe"]["augment_on"] = "device"
    assert loader_shortfalls(config, experiments, {n: {"num_workers": 2} for n in experiments}, augmentation, 8) == []
    config["estimate"]["rates"]["loader_views_per_second_per_core"] = {"simclr": 20}
    with pytest.raises(ConfigError, match="loader_views_per_second_per_core: no rate for 'device'"):
        loader_shortfalls(config, experiments, execution, augmentation, 8)
