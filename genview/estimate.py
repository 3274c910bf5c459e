"""GPU-hours per stage, estimated from the config before anything runs: images x work per image / per-GPU rate.

Work per image: analysis encodes each training image once (and the LLM scores each caption); generation runs
``steps`` denoising steps per view; pre-training pushes ``epochs x views`` augmented images through the backbone (2
views for two-view methods, ``n_views`` for vision-language ones, plus the quality encoder on the same views for the
genview variant); evaluation encodes every image of a dataset once per experiment, and the paper linear protocol
runs the backbone over the training images once per epoch (semi-supervised fine-tuning likewise). Pure: image counts
and rates come in as arguments.
"""

from __future__ import annotations

import pandas as pd

from genview.config import dataset_generation
from genview.errors import ConfigError

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
        if protocol in ("linear", "semisup"):
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


def render_estimate(table: pd.DataFrame, counts: dict[str, int], rates_from: dict | None = None) -> str:
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
    return "\n".join(lines) + "\n"


def _hours(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
