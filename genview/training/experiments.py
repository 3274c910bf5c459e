"""Experiments from the config: the matrix (methods x variants on a recipe) and explicit entries, each resolved to
one self-contained dict (recipe, backbone, method options, views, quality settings, seed) that its job receives.

Import-light: the Snakefile resolves experiments at parse time.
"""

from __future__ import annotations

import copy

from genview.errors import ConfigError

VARIANTS = ("baseline", "views", "genview")
SETTINGS = ("recipe", "backbone", "dataset", "method_args", "views", "quality", "gpus", "mem_mb", "runtime")


def _lookup(config: dict, section: str, key: str, where: str) -> dict:
    table = config["pretrain"][section] if section != "datasets" else config["datasets"]
    if key not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(f"{where}: {key!r} is not a key of {'' if section == 'datasets' else 'pretrain.'}"
                          f"{section} (known: {known})")
    return table[key]


def _resolve(config: dict, name: str, method: str, variant: str, settings: dict, where: str) -> dict:
    dataset = settings["dataset"]
    dataset_spec = _lookup(config, "datasets", dataset, f"{where}.dataset")
    views = copy.deepcopy(settings["views"])
    available = dataset_spec["sources"]
    if views["sources"] is None:
        views["sources"] = list(available)
    missing = sorted(set(views["sources"]) - set(available))
    if variant != "baseline" and missing:
        raise ConfigError(f"{where}.views.sources: {missing} not generated for dataset {dataset!r} "
                          f"(datasets.{dataset}.sources: {available})")
    if variant == "baseline":
        views["sources"] = []
    experiment = dict(
        name=name, method=method, variant=variant, dataset=dataset, seed=config["seed"],
        recipe=copy.deepcopy(_lookup(config, "recipes", settings["recipe"], f"{where}.recipe")),
        backbone=copy.deepcopy(_lookup(config, "backbones", settings["backbone"], f"{where}.backbone")),
        method_args=copy.deepcopy(settings["method_args"].get(method, {})),
        views=views, quality=copy.deepcopy(settings["quality"]),
        gpus=settings["gpus"], mem_mb=settings["mem_mb"], runtime=settings["runtime"],
    )
    if variant == "genview":
        experiment["quality_encoder"] = copy.deepcopy(config["models"]["quality_encoder"])
    return experiment


def resolve_experiments(config: dict) -> dict[str, dict]:
    """Experiment name -> resolved experiment, for a validated config; errors name the config key."""
    experiments: dict[str, dict] = {}

    def add(experiment: dict, where: str) -> None:
        if experiment["name"] in experiments:
            raise ConfigError(f"{where}: experiment name {experiment['name']!r} is defined twice")
        experiments[experiment["name"]] = experiment

    for i, entry in enumerate(config["pretrain"]["matrix"]):
        where = f"pretrain.matrix[{i}]"
        for method in entry["methods"]:
            for variant in entry["variants"]:
                fields = dict(method=method, variant=variant, dataset=entry["dataset"], recipe=entry["recipe"],
                              backbone=entry["backbone"])
                try:
                    name = entry["name"].format(**fields)
                except KeyError as error:
                    raise ConfigError(f"{where}.name: unknown field {error} (fields: {', '.join(fields)})") from None
                add(_resolve(config, name, method, variant, entry, where), where)
    for name, entry in config["pretrain"]["experiments"].items():
        where = f"pretrain.experiments.{name}"
        add(_resolve(config, name, entry["method"], entry["variant"], entry, where), where)
    return experiments
