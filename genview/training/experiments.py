"""Experiments from the config: the matrix (methods x variants on a recipe) and explicit entries, each resolved to
one self-contained dict (recipe, backbone, method options, views, loss coefficients, peak learning rate, seed) that
its job receives.

Everything a job would discover late is checked here, at parse time: the method name and its options, the view
sources, and the loss coefficients the method can compute (a coefficient set that CLIP cannot compute must not wait
for the switch epoch to fail). Import-light: the Snakefile resolves experiments when it is parsed.
"""

from __future__ import annotations

import copy

from genview.errors import ConfigError
from genview.method_catalog import METHOD_CATALOG, MethodInfo

VARIANTS = ("baseline", "views", "genview")
#: Settings that change how a training runs, never what it computes: they reach the job as Snakemake resources (not
#: params, so changing one reruns nothing) and a resume point made under other values is used as is. The GPU count is
#: not one of them: per-GPU batch statistics (BatchNorm without SyncBN on CPU processes, MoCo v2's per-GPU shuffled
#: BN) change the result, so it is part of the experiment.
RECIPE_EXECUTION_KEYS = ("num_workers", "save_every_epochs", "save_every_steps", "max_nonfinite_in_row")
EXPERIMENT_EXECUTION_KEYS = ("mem_mb", "runtime")


def peak_lr(recipe: dict, views_per_sample: int) -> float:
    """The learning rate after scaling, as the official recipes compute it.

    linear: ``lr × batch / 256`` (the SSL recipes). views: ``lr × batch × views / 512``, which is GenView++'s official
    ``blr · batch · world_size · n_img / 256 · num_crop / 2`` with ``num_crop`` = 1 (its scripts never set it), the
    global batch counting captions and ``views`` the images per caption. none: ``lr`` as given.
    """
    scaling, lr, batch = recipe["lr_scaling"], recipe["lr"], recipe["batch_size"]
    if scaling == "linear":
        return lr * batch / 256
    if scaling == "views":
        return lr * batch * views_per_sample / 512
    return lr


def _default_coefficients(info: MethodInfo, variant: str) -> tuple[list[float], list[float]]:
    """Early and later c0..c3: image-image terms where the method has them; the quality-driven terms join at the
    switch epoch for the genview variant (official: 1 0 1 0 then 1 1 1 1; CLIP 0 0 1 0 then 0 0 1 1)."""
    c0 = 1.0 if info.has_image_image_head else 0.0
    early = [c0, 0.0, 1.0, 0.0]
    return early, ([c0, c0, 1.0, 1.0] if variant == "genview" else early)


def _check_coefficients(
    coefficients: list[float], info: MethodInfo, variant: str, n_views: int, where: str
) -> list[str]:
    problems = []
    values = ", ".join(f"{c:g}" for c in coefficients)
    if not any(coefficients):
        problems.append(f"{where}: all four coefficients are 0, nothing would be trained")
    if (coefficients[0] or coefficients[1]) and not info.has_image_image_head:
        problems.append(
            f"{where}: method {info.name!r} has no image-image term, so c0 and c1 must be 0 (got "
            f"{values}); use a method with one (e.g. slip)"
        )
    if (coefficients[0] or coefficients[1]) and n_views < 2:
        problems.append(f"{where}: the image-image terms (c0, c1) need views.n_views >= 2 (got {n_views})")
    if (coefficients[1] or coefficients[3]) and variant != "genview":
        problems.append(
            f"{where}: the quality-driven terms (c1, c3) need quality weights, i.e. variant genview "
            f"(got {variant!r}, coefficients {values})"
        )
    return problems


def _resolve(
    config: dict,
    name: str,
    method: str,
    variant: str,
    settings: dict,
    where: str,
    problems: list[str],
    seed: int | None = None,
) -> tuple[dict, dict] | None:
    tables = {
        "recipe": config["pretrain"]["recipes"],
        "backbone": config["pretrain"]["backbones"],
        "dataset": config["datasets"],
    }
    missing = _unknown_table_keys(tables, settings, where)
    problems += missing
    if method not in METHOD_CATALOG:
        key = "methods" if where.startswith("pretrain.matrix") else "method"
        problems.append(f"{where}.{key}: unknown method {method!r} (known: {', '.join(METHOD_CATALOG)})")
        return None
    info = METHOD_CATALOG[method]
    problems += _unknown_options(info, settings, where)
    if missing:
        return None
    recipe = copy.deepcopy(tables["recipe"][settings["recipe"]])
    views = _resolve_views(config, settings, variant, where, problems)
    quality = copy.deepcopy(settings["quality"])
    if info.kind == "vision_language":
        views_per_sample = _resolve_vision_language(info, variant, views, quality, where, problems)
    else:
        problems += _image_only_problems(info, variant, recipe, quality, where)
        views_per_sample = 2 if info.kind == "two_view" else 1
    if info.kind == "supervised":
        problems += _supervised_problems(info, variant, settings, where)
    problems += _multi_crop_problems(info, recipe, where)
    if recipe["decay_norm_and_bias"] is None:
        recipe["decay_norm_and_bias"] = info.decay_norm_and_bias
    execution = {key: recipe.pop(key) for key in RECIPE_EXECUTION_KEYS}
    execution.update({key: settings[key] for key in EXPERIMENT_EXECUTION_KEYS})
    experiment = dict(
        name=name,
        method=method,
        variant=variant,
        dataset=settings["dataset"],
        seed=config["seed"] if seed is None else seed,
        recipe=recipe,
        peak_lr=peak_lr(recipe, views_per_sample),
        backbone=copy.deepcopy(tables["backbone"][settings["backbone"]]),
        method_args=copy.deepcopy(settings["method_args"].get(method, {})),
        views=views,
        quality=quality,
        gpus=settings["gpus"],
    )
    if variant == "genview":
        experiment["quality_encoder"] = quality_encoder_settings(config["models"]["quality_encoder"])
    return experiment, execution


def _unknown_table_keys(tables: dict[str, dict], settings: dict, where: str) -> list[str]:
    """A line per recipe, backbone or dataset the experiment names that its config section does not have."""
    problems = []
    for key, table in tables.items():
        if settings[key] not in table:
            section = "datasets" if key == "dataset" else f"pretrain.{key}s"
            problems.append(
                f"{where}.{key}: {settings[key]!r} is not a key of {section} "
                f"(known: {', '.join(sorted(table)) or 'none'})"
            )
    return problems


def _unknown_options(info: MethodInfo, settings: dict, where: str) -> list[str]:
    unknown = sorted(set(settings["method_args"].get(info.name, {})) - set(info.default_options))
    if not unknown:
        return []
    return [
        f"{where}.method_args.{info.name}: unknown option(s) {unknown} (allowed: "
        f"{', '.join(sorted(info.default_options))})"
    ]


def _resolve_views(config: dict, settings: dict, variant: str, where: str, problems: list[str]) -> dict:
    """The experiment's views section with its sources filled in: every source generated for the dataset where it
    names none, and none for the baseline (real images only)."""
    dataset = settings["dataset"]
    views = copy.deepcopy(settings["views"])
    available = config["datasets"][dataset]["sources"]
    if views["sources"] is None:
        views["sources"] = list(available)
    absent = sorted(set(views["sources"]) - set(available))
    if variant != "baseline" and absent:
        problems.append(
            f"{where}.views.sources: {absent} not generated for dataset {dataset!r} "
            f"(datasets.{dataset}.sources: {available})"
        )
    if variant == "baseline":
        views["sources"] = []
    return views


def _resolve_vision_language(
    info: MethodInfo, variant: str, views: dict, quality: dict, where: str, problems: list[str]
) -> int:
    """Completes a vision-language experiment's ``views`` (views per caption) and ``quality`` (loss coefficients,
    the method's defaults where none are given) in place and checks them; returns the views per caption, which the
    learning rate scales with."""
    if variant == "baseline" and not info.has_image_image_head:
        views["n_views"] = 1  # plain CLIP: one real view per caption
    early, later = _default_coefficients(info, variant)
    quality["early_coefs"] = [float(c) for c in quality.get("early_coefs") or early]
    quality["later_coefs"] = [float(c) for c in quality.get("later_coefs") or later]
    for key in ("early_coefs", "later_coefs"):
        problems += _check_coefficients(quality[key], info, variant, views["n_views"], f"{where}.quality.{key}")
    # View slot v > 0 draws from source (v - 1) mod the number of sources: fewer slots leave sources unused.
    unused = views["sources"][views["n_views"] - 1 :]
    if variant != "baseline" and unused:
        problems.append(
            f"{where}.views.n_views: {views['n_views']} views per caption hold {views['n_views'] - 1} generated "
            f"view(s), so sources {unused} of {views['sources']} would never be used; give n_views >= "
            f"{len(views['sources']) + 1} or name fewer views.sources"
        )
    return views["n_views"]


def _image_only_problems(info: MethodInfo, variant: str, recipe: dict, quality: dict, where: str) -> list[str]:
    """What a method without captions cannot take: loss coefficients, or a GenView quality group that does not
    divide the batch."""
    problems = []
    for key in ("early_coefs", "later_coefs"):
        if quality.get(key):
            problems.append(
                f"{where}.quality.{key}: loss coefficients apply to vision-language methods only "
                f"({info.name!r} is a {info.kind.replace('_', '-')} method)"
            )
    group = min(quality["group_size"], recipe["batch_size"])
    if variant == "genview" and recipe["batch_size"] % group:
        problems.append(
            f"{where}.quality.group_size: {quality['group_size']} does not divide the recipe's batch_size "
            f"{recipe['batch_size']} (GenView's softmax runs over groups of that many samples)"
        )
    return problems


def _supervised_problems(info: MethodInfo, variant: str, settings: dict, where: str) -> list[str]:
    """What the labelled reference needs: the baseline variant and the training split's number of classes."""
    problems = []
    if variant != "baseline":
        problems.append(
            f"{where}: method {info.name!r} is the labelled reference; it takes no generated views or quality "
            f"weights (variant baseline only, got {variant!r})"
        )
    num_classes = settings["method_args"].get(info.name, {}).get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 2:
        problems.append(
            f"{where}.method_args.{info.name}.num_classes: the training split's number of classes is required "
            f"(an integer >= 2), got {num_classes!r}"
        )
    return problems


def _multi_crop_problems(info: MethodInfo, recipe: dict, where: str) -> list[str]:
    if recipe["multi_crop"] and info.kind != "two_view":
        return [f"{where}.recipe: multi_crop applies to two-view methods only ({info.name!r} is not one)"]
    if recipe["multi_crop"] and not info.supports_multi_crop:
        return [
            f"{where}.recipe: multi_crop is not supported by {info.name!r} (methods that take it: "
            f"{', '.join(n for n, i in METHOD_CATALOG.items() if i.supports_multi_crop)})"
        ]
    return []


def resolve_experiments(config: dict) -> dict[str, dict]:
    """Experiment name -> resolved experiment: everything its training computes from, nothing about how it runs
    (see :func:`resolve_execution`). For a validated config; every problem is reported at once, each naming its
    config key."""
    return _checked(config)[0]


def resolve_execution(config: dict) -> dict[str, dict]:
    """Experiment name -> its execution settings (loader workers, resume-point cadence, the non-finite-loss limit,
    memory and run time), which change nothing a training computes."""
    return _checked(config)[1]


def _checked(config: dict) -> tuple[dict[str, dict], dict[str, dict]]:
    experiments, executions, problems = resolve_all(config)
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) with the experiments:\n" + "\n".join(f"  - {problem}" for problem in problems),
            problems,
        )
    return experiments, executions


def quality_encoder_settings(spec: dict) -> dict:
    """The settings of a model role that decide its outputs (the open_clip quality encoder's name, weights and
    input size); loading options that do not change outputs stay out."""
    return {key: spec[key] for key in ("model", "pretrained", "image_size") if key in spec}


def resolve_all(config: dict) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """(experiments, their execution settings, problems): every experiment that resolves, and a line per problem
    (each once), so a caller can check the rest of the config against the experiments that are fine."""
    experiments: dict[str, dict] = {}
    executions: dict[str, dict] = {}
    problems: list[str] = []

    def add(resolved: tuple[dict, dict] | None, where: str) -> None:
        if resolved is None:
            return
        experiment, execution = resolved
        if experiment["name"] in experiments:
            problems.append(f"{where}: experiment name {experiment['name']!r} is defined twice")
        experiments[experiment["name"]] = experiment
        executions[experiment["name"]] = execution

    for i, entry in enumerate(config["pretrain"]["matrix"]):
        where = f"pretrain.matrix[{i}]"
        pattern = entry["name"]
        if entry["seeds"] and "{seed}" not in pattern:
            pattern += "_s{seed}"
        for method in entry["methods"]:
            for variant in entry["variants"]:
                for seed in entry["seeds"] or [None]:
                    fields = dict(
                        method=method,
                        variant=variant,
                        dataset=entry["dataset"],
                        recipe=entry["recipe"],
                        backbone=entry["backbone"],
                        seed=config["seed"] if seed is None else seed,
                    )
                    try:
                        name = pattern.format(**fields)
                    except KeyError as error:
                        problems.append(f"{where}.name: unknown field {error} (fields: {', '.join(fields)})")
                        continue
                    add(_resolve(config, name, method, variant, entry, where, problems, seed), where)
    for name, entry in config["pretrain"]["experiments"].items():
        where = f"pretrain.experiments.{name}"
        seeds = entry["seeds"] or [None]
        for seed in seeds:
            full = name if seed is None else (name.format(seed=seed) if "{seed}" in name else f"{name}_s{seed}")
            add(_resolve(config, full, entry["method"], entry["variant"], entry, where, problems, seed), where)
    return experiments, executions, list(dict.fromkeys(problems))
