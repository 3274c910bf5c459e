"""GPU-hours per stage, estimated from the config before anything runs: images x work per image / per-GPU rate.

Work per image: analysis encodes each training image once (and the LLM scores each caption); generation runs
``steps`` denoising steps per view; pre-training pushes ``epochs x views`` augmented images through the backbone (2
views for two-view methods, ``n_views`` for vision-language ones, plus the quality encoder on the same views for the
genview variant); evaluation encodes every image of a dataset once per experiment, and the paper linear protocol
runs the backbone over the training images once per epoch (semi-supervised fine-tuning likewise). Pure: image counts
and rates come in as arguments.

The pre-training rates assume the CPUs feed the GPUs: ``loader_shortfalls`` names the experiments whose loader
processes per GPU cannot deliver their backbone's rate at the per-core loader rates.
"""

from __future__ import annotations

import math

import pandas as pd

from genview.config.load import dataset_generation
from genview.errors import ConfigError
from genview.vocabulary import PROTOCOLS

TWO_VIEW_VIEWS = 2


def _images(counts: dict[str, int], dataset: str) -> int:
    if dataset not in counts:
        raise ConfigError(f"estimate.images: no image count for dataset {dataset!r} (and no manifest to count)")
    return counts[dataset]


def estimate_gpu_hours(
    config: dict, experiments: dict, evaluations: list, counts: dict[str, int], vision_language: set[str]
) -> pd.DataFrame:
    """One row per stage: jobs, work (GPU-seconds) and GPU-hours, plus a total row.

    ``experiments``: resolved experiments; ``evaluations``: (experiment, protocol, dataset) triples; ``counts``:
    images per dataset; ``vision_language``: method names that train on ``n_views`` views per caption.
    """
    rates = config["estimate"]["rates"]
    generation = config["generation"]
    seconds: dict[str, float] = {}
    jobs: dict[str, int] = {}

    def add(stage: str, work: float, job_count: int = 1) -> None:
        seconds[stage] = seconds.get(stage, 0.0) + work
        jobs[stage] = jobs.get(stage, 0) + job_count

    for name, spec in config["datasets"].items():
        images = _images(counts, name)
        settings = dataset_generation(config, name)
        adaptive = {key for source in spec["sources"] for key, value in settings[source].items() if value == "adaptive"}
        if "noise_level" in adaptive:
            add("analysis (foreground)", images / rates["foreground_images_per_second"], spec["num_shards"])
        if config["analysis"]["complexity_scorer"] == "llm" and "guidance_scale" in adaptive:
            add("analysis (caption complexity)", images / rates["llm_captions_per_second"], spec["num_shards"])
        views = images * len(spec["sources"]) * generation["samples"]
        add(
            "generation",
            views * generation["steps"] / rates["generation_image_steps_per_second"],
            spec["num_shards"] * len(spec["sources"]),
        )
    for experiment in experiments.values():
        backbone = experiment["backbone"]["name"]
        if backbone not in rates["pretrain_images_per_second"]:
            raise ConfigError(f"estimate.rates.pretrain_images_per_second: no rate for backbone {backbone!r}")
        per_sample = experiment["views"]["n_views"] if experiment["method"] in vision_language else TWO_VIEW_VIEWS
        passes = _images(counts, experiment["dataset"]) * experiment["recipe"]["epochs"] * per_sample
        work = passes / rates["pretrain_images_per_second"][backbone]
        if experiment["variant"] == "genview":
            work += passes / rates["quality_images_per_second"]
        add("pre-training", work)
    features = {(experiment, dataset) for experiment, _, dataset in evaluations}
    for _, dataset in sorted(features):
        add("evaluation (features)", _images(counts, dataset) / rates["feature_images_per_second"])
    for _, protocol, dataset in evaluations:
        settings = config["evaluation"].get(protocol, {})
        if not PROTOCOLS[protocol].cached:  # linear, semisup: they read the images again, for epochs
            # an upper bound for semisup: its subsets are a fraction of the training images
            add(
                f"evaluation ({protocol})",
                _images(counts, dataset) * settings["epochs"] / rates["linear_images_per_second"],
            )
    table = pd.DataFrame(
        [dict(stage=stage, jobs=jobs[stage], gpu_hours=work / 3600) for stage, work in seconds.items()]
    )
    total = dict(stage="total", jobs=int(table["jobs"].sum()), gpu_hours=table["gpu_hours"].sum())
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def loader_shortfalls(
    config: dict, experiments: dict, execution: dict, default_augmentation: dict[str, str], cpus_per_gpu: int | None
) -> list[str]:
    """One line per group of experiments (backbone, augmentation, loader processes) whose input pipeline cannot feed
    the views/s per GPU the estimate assumes for their backbone.

    A GPU's loader gets min(num_workers, ``cpus_per_gpu``) cores (one loader process each; ``cpus_per_gpu``
    None: the workers alone), each delivering estimate.rates.loader_views_per_second_per_core of the experiment's
    augmentation (``device`` with the recipe's augment_on: device, whose colour steps run on the GPU).
    ``execution``: each experiment's execution settings (its recipe's num_workers); ``default_augmentation``: each
    method's own augmentation preset.
    """
    rates = config["estimate"]["rates"]
    per_core = rates["loader_views_per_second_per_core"]
    groups: dict[tuple, list[str]] = {}
    for name, experiment in sorted(experiments.items()):
        recipe = experiment["recipe"]
        key = "device" if recipe["augment_on"] == "device" else recipe["augmentation"]
        key = key or default_augmentation[experiment["method"]]
        if key not in per_core:
            raise ConfigError(f"estimate.rates.loader_views_per_second_per_core: no rate for {key!r}")
        workers = execution[name]["num_workers"]
        cores = min(workers, cpus_per_gpu) if cpus_per_gpu else workers
        if max(cores, 1) * per_core[key] < rates["pretrain_images_per_second"][experiment["backbone"]["name"]]:
            groups.setdefault((experiment["backbone"]["name"], key, workers), []).append(name)
    lines = []
    for (backbone, key, workers), names in groups.items():
        needed = rates["pretrain_images_per_second"][backbone]
        cores = min(workers, cpus_per_gpu) if cpus_per_gpu else workers
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(
            f"Warning: the input pipeline cannot feed {shown}: {backbone} is assumed to take {needed:g} views/s per"
            f" GPU, {key} views come at {per_core[key]:g}/s per CPU core, so a GPU needs"
            f" {math.ceil(needed / per_core[key])} loader cores and gets {cores} (recipe num_workers {workers}"
            + (f", cpus_per_gpu {cpus_per_gpu}" if cpus_per_gpu else "")
            + "): raise the recipe's num_workers (and the profile's cpus_per_gpu with it) or set its augment_on:"
            " device, else pre-training is slower than estimated."
        )
    return lines


def render_estimate(
    table: pd.DataFrame, counts: dict[str, int], rates_from: dict | None = None, warnings: list[str] = ()
) -> str:
    lines = ["| stage | jobs | GPU-hours |", "|---|---:|---:|"]
    lines += [f"| {row.stage} | {row.jobs} | {_hours(row.gpu_hours)} |" for row in table.itertuples()]
    lines += ["", "Images: " + ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))]
    if rates_from:
        details = ", ".join(str(rates_from[key]) for key in ("date", "software") if rates_from.get(key))
        lines.append(
            f"Rates: measured on {rates_from['device']}"
            + (f" ({details})" if details else "")
            + (
                f": {', '.join(rates_from['measured'])}; the other rates are the config's"
                if rates_from.get("measured")
                else ""
            )
            + "."
        )
        lines += [
            f"{label}: {rates_from[key]}"
            for key, label in (("command", "Measured by"), ("notes", "Notes"))
            if rates_from.get(key)
        ]
    else:
        lines.append(
            "Rates: the config's estimate.rates (per GPU); set them to what your cards measure "
            "(benchmarks/rates.py measures them)."
        )
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines) + "\n"


def _hours(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
