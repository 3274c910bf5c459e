"""One resolver for a whole config, run before anything is scheduled: by the Snakefile and by ``genview config
check``, so both report the same problems.

It validates the schema, resolves the experiments (method names and options, coefficient sets each method can
compute), the evaluations (protocols, datasets, settings, zero-shot class names and templates), the tables and the
report's figures, and checks the filesystem: dataset roots and their split folders, CSV headers and JSON files,
class-list and subset-list files, and local model folders (hub ids are not checked: that would need the network).
Every problem names its key path; all problems are reported at once.

Import-light: the Snakefile runs it at parse time, in every job.
"""

from __future__ import annotations

import csv
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from genview.config.load import dataset_generation, validate_config
from genview.data import SYNTHETIC_ROOT
from genview.data.checks import dataset_problems
from genview.errors import BadInputError, ConfigError
from genview.vocabulary import SOURCE_ROLES

#: Model roles and the file that marks a usable local folder of each (the libraries' own layouts).
#: Where the models the workflow builds itself live (tiny, trained and rehearsal stand-ins): never the user's.
WORKFLOW_MODELS_DIR = "results/models"
MODEL_MARKERS = {
    "unclip": "model_index.json",
    "text2img": "model_index.json",
    "fg_encoder": "open_clip_config.json",
    "quality_encoder": "open_clip_config.json",
    "complexity_llm": "config.json",
}


@dataclass
class Resolved:
    config: dict
    experiments: dict[str, dict] = field(default_factory=dict)
    execution: dict[str, dict] = field(default_factory=dict)
    evaluations: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    tables: dict[str, dict] = field(default_factory=dict)
    #: Not errors, but worth saying before the DAG is built (printed by the Snakefile and by `genview config check`).
    warnings: list[str] = field(default_factory=list)


# --- which stages a config uses -----------------------------------------------------------------------------------


def all_datasets(config: dict) -> dict[str, dict]:
    return {**config["eval_datasets"], **config["datasets"]}


def _adaptive(config: dict, dataset: str, source: str, key: str) -> bool:
    return dataset_generation(config, dataset)[source].get(key) == "adaptive"


#: Per-shard analysis part -> the generation setting it makes adaptive.
ANALYSIS_PARTS = {"foreground": "noise_level", "complexity": "guidance_scale"}


def analysis_parts(config: dict, dataset: str, sources: list[str] | None = None) -> list[str]:
    """The per-shard analysis parts the views of ``sources`` (default: all the dataset's) need: foreground for an
    adaptive noise level, complexity for an adaptive guidance scale."""
    sources = config["datasets"][dataset]["sources"] if sources is None else sources
    return [part for part, key in ANALYSIS_PARTS.items() if any(_adaptive(config, dataset, s, key) for s in sources)]


def needs_foreground(config: dict, dataset: str) -> bool:
    return "foreground" in analysis_parts(config, dataset)


def needs_complexity(config: dict, dataset: str) -> bool:
    return "complexity" in analysis_parts(config, dataset)


def models_used(config: dict, experiments: dict[str, dict]) -> set[str]:
    """The model roles some job of this config loads."""
    roles = set()
    for dataset, spec in config["datasets"].items():
        roles |= {SOURCE_ROLES[source] for source in spec["sources"]}
        if needs_foreground(config, dataset):
            roles.add("fg_encoder")
        if needs_complexity(config, dataset) and config["analysis"]["complexity_scorer"] == "llm":
            roles.add("complexity_llm")
    if any(e["variant"] == "genview" for e in experiments.values()) or config["report"]["quality_audit"]:
        roles.add("quality_encoder")
    return roles


def model_location(config: dict, role: str) -> str | None:
    """The folder or hub id of a role's model; None for a generator the workflow provides (the shapes renderer)."""
    spec = config["models"][role]
    if spec.get("renderer"):
        return None
    return (spec.get("path") or spec["model"]).removeprefix("local-dir:")


def is_local_model(config: dict, role: str) -> bool:
    from genview.models import is_local_path

    spec, location = config["models"][role], model_location(config, role)
    return location is not None and (spec.get("model", "").startswith("local-dir:") or is_local_path(location))


# --- the checks ---------------------------------------------------------------------------------------------------


def _report_problems(config: dict, experiments: dict, tables: dict | None = None) -> list[str]:
    report, problems = config["report"], []
    datasets = all_datasets(config)
    if report["tsne"]:
        if report["tsne"]["dataset"] not in datasets:
            problems.append(f"report.tsne.dataset: {report['tsne']['dataset']!r} is not a dataset of this config")
        unknown = sorted(set(report["tsne"]["panels"].values()) - set(experiments))
        if unknown:
            problems.append(f"report.tsne.panels: unknown experiment(s) {unknown}")
    for key in ("gallery", "quality_audit"):
        if report[key] and report[key]["dataset"] not in config["datasets"]:
            problems.append(
                f"report.{key}.dataset: {report[key]['dataset']!r} is not a training dataset of this "
                f"config ({sorted(config['datasets'])})"
            )
    checks = report["checks"]
    if checks:
        dataset = checks["dataset"]
        if dataset not in config["datasets"] or config["datasets"][dataset]["kind"] != "shapes":
            problems.append(f"report.checks.dataset: {dataset!r} is not a shapes training dataset of this config")
        elif not needs_foreground(config, dataset):
            problems.append(f"report.checks.dataset: {dataset} has no adaptive noise level (no foreground fit)")
        for key in ("learning_table", "zeroshot_table"):
            if checks[key] and checks[key] not in (tables or {}):
                problems.append(f"report.checks.{key}: {checks[key]!r} is not a table of {report['tables']}")
    gallery = report["gallery"]
    if gallery and gallery["dataset"] in config["datasets"]:
        dataset = gallery["dataset"]
        shards = config["datasets"][dataset]["num_shards"]
        if gallery["shard"] >= shards:
            problems.append(f"report.gallery.shard: {dataset} has {shards} shard(s)")
        if not (needs_foreground(config, dataset) or needs_complexity(config, dataset)):
            problems.append(f"report.gallery: {dataset} has no adaptive noise level or guidance scale to show")
    return problems


#: Snakemake's DAG of more jobs than this takes minutes and gigabytes to build (100,000 shards: 11 minutes and
#: 2.7 GB before it was killed); the paper config has about 5,000 jobs.
DAG_WARN_JOBS = 20_000
#: A manifest up to this size is counted at parse time to compare num_shards with its rows (a bigger dataset is
#: checked by its shard job, before any view is generated).
COUNTED_MANIFEST_BYTES = 16 << 20


def _shard_problems(config: dict, results: Path) -> tuple[list[str], list[str]]:
    """More shards than training images (empty shards) is an error; a shard count whose jobs make a DAG too big to
    build quickly is a warning. Returns (problems, warnings)."""
    problems, jobs = [], 0
    for name, spec in config["datasets"].items():
        shards = spec["num_shards"]
        jobs += shards * (2 + len(spec["sources"]) + len(analysis_parts(config, name)))  # shard, views, parts
        manifest = results / "data" / name / "manifest.csv"
        if shards > 1 and manifest.is_file() and manifest.stat().st_size <= COUNTED_MANIFEST_BYTES:
            with open(manifest, newline="") as handle:
                rows = sum(row.get("split") == "train" for row in csv.DictReader(handle))
            if shards > rows:
                problems.append(
                    f"datasets.{name}.num_shards: {shards} shards for {rows} training images ({manifest}); "
                    f"at most {rows}, or some shards are empty"
                )
    warnings = []
    if jobs > DAG_WARN_JOBS:
        counts = ", ".join(f"{name}: {spec['num_shards']}" for name, spec in config["datasets"].items())
        warnings.append(
            f"datasets.*.num_shards ({counts}) make about {jobs:,} per-shard jobs; Snakemake needs minutes and "
            f"gigabytes of memory to plan more than {DAG_WARN_JOBS:,} (fewer, larger shards plan in seconds)"
        )
    return problems, warnings


def _checkpoint_problems(experiments: dict, results: Path) -> list[str]:
    """A finished checkpoint whose size differs from the one its training recorded (a stat each): stopped before
    the DAG is built, since the evaluations Snakemake would rerun on it delete their old results first."""
    from genview.io import digest_problem

    problems = []
    for name in sorted(experiments):
        path = results / "pretrain" / name / "checkpoint.pt"
        problem = path.is_file() and digest_problem(path)
        if problem:
            folder = path.parent
            problems.append(
                f"{path}: {problem}. Its evaluation results are kept; to retrain, delete {folder} (the checkpoint "
                f"is write-protected: `rm -rf {shlex.quote(str(folder))}`) and run again"
            )
    return problems


def _file_problems(config: dict, experiments: dict, evaluations: dict) -> list[str]:
    problems = []
    used = {d for _, _, d in evaluations} | set(config["datasets"])
    # Roots the workflow writes itself (rule make_synthetic), which other entries may read too (cc3m_fixed).
    made = {
        os.path.normpath(SYNTHETIC_ROOT.format(name=name))
        for name, spec in all_datasets(config).items()
        if spec.get("synthetic")
    }
    for section in ("datasets", "eval_datasets"):
        for name, spec in config[section].items():
            if name in used and os.path.normpath(spec.get("root") or "") not in made:
                problems += dataset_problems(name, spec, f"{section}.{name}")
    for fraction, path in config["evaluation"]["semisup"]["subset_lists"].items():
        if not Path(path).is_file():
            problems.append(f"evaluation.semisup.subset_lists.{fraction}: file {path} does not exist")
    for role in sorted(models_used(config, experiments)):
        location = model_location(config, role)
        if is_local_model(config, role) and not Path(location, MODEL_MARKERS[role]).is_file():
            if Path(location).resolve().is_relative_to(Path(WORKFLOW_MODELS_DIR).resolve()):
                continue  # the stand-ins the workflow builds itself (tiny, trained, rehearsal)
            what = "does not exist" if not Path(location).exists() else f"has no {MODEL_MARKERS[role]}"
            problems.append(f"models.{role}: local model folder {location} {what}")
    return problems


def _zeroshot_problems(config: dict, evaluations: dict) -> list[str]:
    from genview.evaluation.catalog import zero_shot_templates

    problems = []
    datasets = all_datasets(config)
    for dataset in sorted({d for _, p, d in evaluations if p == "zeroshot"}):
        section = "datasets" if dataset in config["datasets"] else "eval_datasets"
        try:
            zero_shot_templates(dataset, datasets[dataset])
        except BadInputError as error:
            problems.append(f"{section}.{dataset}: zero-shot classification has no class names and prompts: {error}")
    return problems


def resolve_config(config: dict, workflow_dir: str | os.PathLike = ".", *, source: str = "config") -> Resolved:
    """Validate and resolve ``config`` in place (defaults filled in) and return everything the workflow derives from
    it. Raises one :class:`ConfigError` listing every problem. ``config["check_files"]`` false skips the filesystem
    checks (to look at a DAG on a machine without the data)."""
    from genview.evaluation.runs import resolve_evaluations
    from genview.report.specs import check_sources, load_table_specs
    from genview.training.experiments import resolve_all

    validate_config(config, source=source)  # the rest reads a schema-valid config with its defaults
    resolved, problems = Resolved(config), []
    resolved.experiments, resolved.execution, problems = resolve_all(config)
    try:
        resolved.evaluations = resolve_evaluations(config, resolved.experiments)
    except ConfigError as error:
        problems += error.problems
    tables_file = config["report"]["tables"]
    if tables_file:
        try:
            resolved.tables = load_table_specs(Path(workflow_dir, tables_file))
            if resolved.evaluations or not problems:
                check_sources(resolved.tables, resolved.evaluations, tables_file)
        except ConfigError as error:
            problems += [f"report.tables: {problem}" for problem in error.problems]
    problems += _report_problems(config, resolved.experiments, resolved.tables)
    problems += _zeroshot_problems(config, resolved.evaluations)
    if config["check_files"]:
        problems += _file_problems(config, resolved.experiments, resolved.evaluations)
    shard_problems, resolved.warnings = _shard_problems(config, Path("results"))
    problems += shard_problems + _checkpoint_problems(resolved.experiments, Path("results"))
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"{source}: {len(problems)} problem(s) found before any job ran:\n{lines}", problems)
    return resolved
