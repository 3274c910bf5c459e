# Config resolution, wildcard constraints and input functions. Only light imports: every job re-parses this.
#
# Rule params carry exactly the settings a rule's output depends on (they are a rerun trigger); execution settings
# (loader workers, resume-point cadence, memory, run time) reach jobs through resources, so changing them reruns
# nothing. Batch sizes are params: batched CUDA kernels may change results.
import functools
import json
import os
import re
import shlex
import sys
from pathlib import Path

from genview.config.load import dataset_generation, derive_config
from genview.data import SYNTHETIC_LAYOUT_KEYS, SYNTHETIC_MARKER, SYNTHETIC_ROOT, dataset_root
from genview.errors import ConfigError
from genview.config.resolve import ANALYSIS_PARTS, analysis_parts
from genview.config.resolve import needs_complexity as _needs_complexity
from genview.config.resolve import needs_foreground as _needs_foreground
from genview.config.resolve import resolve_config

try:
    # A derived config (config/rehearsal.yaml) is resolved onto its base first; the global dict is updated in place.
    _derived = derive_config(config, workflow.basedir, "config")
    if _derived is not config:
        config.clear()
        config.update(_derived)
    RESOLVED = resolve_config(config, workflow.basedir)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
for _warning in RESOLVED.warnings:  # before the DAG is built
    print(f"Warning: {_warning}", file=sys.stderr)

# models.offline / models.cache_dir: environment variables that every job inherits (execution settings, not params;
# SLURM jobs get them through sbatch --export=ALL and re-parse this file anyway).
from genview.models.offline import model_environment

os.environ.update(
    model_environment(
        config["models"],
        list(workflow.overwrite_configfiles) or [str(Path(workflow.basedir, "config", "config.yaml"))],
    )
)

TRAIN_DATASETS = sorted(config["datasets"])
ALL_DATASETS = {**config["eval_datasets"], **config["datasets"]}
SHAPES_DATASETS = sorted(name for name, spec in ALL_DATASETS.items() if spec["kind"] == "shapes")
# Datasets the workflow writes in their own kind's format (rule make_synthetic), by root.
SYNTHETIC_ROOTS = {SYNTHETIC_ROOT.format(name=n): n for n, spec in ALL_DATASETS.items() if spec.get("synthetic")}
for _root, _name in SYNTHETIC_ROOTS.items():
    if os.path.normpath(ALL_DATASETS[_name]["root"]) != _root:
        raise WorkflowError(f"{_name}.root: a synthetic dataset is written to {_root}; set its root to that")


def subset(mapping, keys):
    """The entries of ``mapping`` under ``keys`` (those present), as JSON: one rule's share of a config section."""
    return as_json({key: mapping[key] for key in keys if key in mapping})


def _alternatives(names):
    # A pattern that matches nothing when the list is empty, so rules without datasets stay unambiguous.
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(ALL_DATASETS),
    shard=r"\d+",
    source="ic|tc|itc",
    experiment=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    protocol=r"[a-z][a-z0-9_]*",


# The settings each command reads, kept beside it (a job's params are what its output depends on).
from genview.analysis.cli import COMPLEXITY_KEYS, COMPLEXITY_LLM_KEYS, FIT_FOREGROUND_KEYS, FOREGROUND_KEYS
from genview.data.cli import CLASS_NAME_KEYS, INDEX_KEYS, SHAPES_KEYS
from genview.quality.cli import FIT_QUALITY_KEYS


def index_spec_json(wildcards):
    return subset(ALL_DATASETS[wildcards.dataset], INDEX_KEYS)


def shapes_spec_json(wildcards):
    return subset(ALL_DATASETS[wildcards.dataset], SHAPES_KEYS)


def class_names_spec_json(wildcards):
    return subset(ALL_DATASETS[wildcards.dataset], CLASS_NAME_KEYS)


def synthetic_spec_json(wildcards):
    return subset(ALL_DATASETS[wildcards.dataset], SYNTHETIC_LAYOUT_KEYS)


def index_inputs(wildcards):
    """Generated datasets are made by a rule; external ones are read in place and not tracked file by file."""
    spec = ALL_DATASETS[wildcards.dataset]
    if spec["kind"] == "shapes":
        return [f"{dataset_root(wildcards.dataset, spec)}/captions.csv"]
    root = os.path.normpath(spec["root"])
    if root in SYNTHETIC_ROOTS:  # made by the workflow, for this dataset or another on the same root
        return [f"{root}/{SYNTHETIC_MARKER}"]
    return []


def shard_files(dataset):
    return expand(
        "results/data/{dataset}/shards/{shard}.csv",
        dataset=dataset,
        shard=range(config["datasets"][dataset]["num_shards"]),
    )


def all_outputs():
    # The datasets some job reads: an evaluation dataset that no evaluation uses is not indexed (nor checked).
    used = set(TRAIN_DATASETS) | {dataset for _, _, dataset in EVALUATIONS}
    outputs = expand("results/data/{dataset}/manifest.csv", dataset=sorted(used))
    for dataset in TRAIN_DATASETS:
        outputs += view_manifests(dataset)  # implies every shard and every shard's views
    return outputs + foreground_fits() + pretrain_outputs() + evaluation_outputs()


# --- models -------------------------------------------------------------------------------------------------------
from genview.models.tiny import TINY_MARKERS

TINY_MODELS_DIR = "results/models/tiny"
TRAINED_MODELS_DIR = "results/models/trained"
TRAINED_ENCODER_DIR = f"{TRAINED_MODELS_DIR}/encoder"
# The encoders that train_encoder writes, by name, with what differs from models.trained_encoder.
TRAINED_ENCODERS = {"encoder": {}, "encoder_unsupervised": {"token_supervision": 0.0}}
# The dress rehearsal's random-weight models at the real architectures, one folder per size (rule
# build_rehearsal_models): results/models/rehearsal/{full,small}/<role>.
REHEARSAL_MODELS_DIR = "results/models/rehearsal"
REHEARSAL_SIZES = ("full", "small")


def model_location(role):
    from genview.config.resolve import model_location

    return model_location(config, role)


@functools.cache  # called per job of several rules; the config does not change during a run
def model_inputs(*roles):
    """The stand-in files a job needs when a role points at the tiny, trained or rehearsal models the workflow
    builds; real checkpoints (hub ids or local folders) are the user's and are not tracked."""
    inputs = []
    for role in roles:
        spec = config["models"][role]
        if spec.get("renderer"):  # the shapes renderer reads its dataset
            inputs.append(f"{dataset_root(spec['dataset'], {'kind': 'shapes'})}/captions.csv")
            continue
        location = Path(model_location(role))
        if location == Path(TINY_MODELS_DIR, role):
            inputs.append(f"{TINY_MODELS_DIR}/{TINY_MARKERS[role]}")
        elif location == Path(TRAINED_ENCODER_DIR):
            inputs.append(f"{TRAINED_ENCODER_DIR}/open_clip_config.json")
        elif location.name == role and location.parent.parent == Path(REHEARSAL_MODELS_DIR):
            if location.parent.name not in REHEARSAL_SIZES:
                raise WorkflowError(f"models.{role}: {location} is not a rehearsal size ({REHEARSAL_SIZES})")
            inputs.append(f"{location.parent}/{TINY_MARKERS[role]}")
    return inputs


# The GPUs of each rule's jobs, from genview.vocabulary; the rules' `gpu` resources and the cost table read them.
from genview.vocabulary import RULE_GPUS, RULE_PRIORITIES, SOURCE_ROLES


def as_json(value):
    return json.dumps(value, sort_keys=True)


# --- analysis and generation ----------------------------------------------------------------------------------------
def needs_foreground(dataset):
    return _needs_foreground(config, dataset)


def needs_complexity(dataset):
    return _needs_complexity(config, dataset)


LLM_SCORER = config["analysis"]["complexity_scorer"] == "llm"
COMPLEXITY_SETTINGS = COMPLEXITY_KEYS + (COMPLEXITY_LLM_KEYS if LLM_SCORER else ())


def generation_json(wildcards):
    """The generation settings of one source of one dataset (a change to another source's reruns nothing here)."""
    generation = _dataset_generation(wildcards.dataset)
    shared = ("steps", "samples", "save_size", "jpeg_quality", "batch_size")
    return as_json({**{key: generation[key] for key in shared}, wildcards.source: generation[wildcards.source]})


# Per dataset (and source), not per job: a paper DAG asks them thousands of times.
@functools.cache
def _dataset_generation(dataset):
    return dataset_generation(config, dataset)


@functools.cache
def _analysis_parts(dataset, sources):
    return analysis_parts(config, dataset, None if sources is None else list(sources))


def analysis_part_files(dataset, shard, sources=None):
    """The shard's analysis parts that the views of ``sources`` (default: all the dataset's) read, by part name."""
    parts = _analysis_parts(dataset, None if sources is None else tuple(sources))
    return {part: f"results/analysis/{dataset}/{part}/{shard}.csv" for part in parts}


def view_analysis_parts(wildcards):
    return analysis_part_files(wildcards.dataset, wildcards.shard, [wildcards.source])


def analysis_part_options(wildcards, input):
    """--foreground/--complexity for the parts a job reads (a file each, or the files of every shard)."""
    return " ".join(
        f"--{part} {shlex.join([input[part]] if isinstance(input[part], str) else input[part])}"
        for part in ANALYSIS_PARTS
        if part in input.keys()
    )


COMPLEXITY_GPUS = RULE_GPUS["complexity_shard"][config["analysis"]["complexity_scorer"]]


def complexity_models(wildcards):
    return model_inputs("complexity_llm") if LLM_SCORER else []


def complexity_llm_options(wildcards):
    """The chat model and seed: an output setting for the llm scorer only (the lexical one reads neither)."""
    if not LLM_SCORER:
        return ""
    return f"--llm {shlex.quote(as_json(config['models']['complexity_llm']))} --seed {config['seed']}"


def generation_model_inputs(wildcards):
    return model_inputs(SOURCE_ROLES[wildcards.source])


def generation_model_json(wildcards):
    return as_json(config["models"][SOURCE_ROLES[wildcards.source]])


def view_manifests(dataset, sources=None):
    """The collected view manifest of each source (one file per source, not one per shard: see collect_views)."""
    sources = config["datasets"][dataset]["sources"] if sources is None else sources
    return expand("results/views/{dataset}/{source}.manifest.csv", dataset=dataset, source=sources)


def shard_view_manifests(wildcards):
    return expand(
        "results/views/{dataset}/{source}/{shard}.manifest.csv",
        dataset=wildcards.dataset,
        source=wildcards.source,
        shard=range(config["datasets"][wildcards.dataset]["num_shards"]),
    )


def foreground_fits():
    return expand(
        "results/analysis/{dataset}/fg_pca.npz",
        dataset=[d for d in TRAIN_DATASETS if needs_foreground(d)],
    )


# --- pre-training ---------------------------------------------------------------------------------------------------
EXPERIMENTS = RESOLVED.experiments
EXECUTION = RESOLVED.execution


def experiment_json(wildcards):
    return as_json(EXPERIMENTS[wildcards.experiment])


def pretrain_inputs(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    dataset = experiment["dataset"]
    inputs = {"manifest": f"results/data/{dataset}/manifest.csv", "views": []}
    if experiment["variant"] != "baseline":
        inputs["views"] = view_manifests(dataset, experiment["views"]["sources"])
    if experiment["variant"] == "genview":
        inputs["quality_vector"] = f"results/analysis/{dataset}/quality_pca.npz"
        inputs["models"] = model_inputs("quality_encoder")
    return inputs


def quality_vector_option(wildcards, input):
    return f"--quality-vector {shlex.quote(input.quality_vector)}" if "quality_vector" in input.keys() else ""


def experiment_resource(key):
    """An experiment's GPU count (``gpus``, part of the experiment) or an execution setting (resources only)."""
    if key == "gpus":
        return lambda wildcards: EXPERIMENTS[wildcards.experiment]["gpus"]
    return lambda wildcards: EXECUTION[wildcards.experiment][key]


def pretrain_outputs():
    return expand("results/pretrain/{experiment}/checkpoint.pt", experiment=sorted(EXPERIMENTS))


# --- evaluation -----------------------------------------------------------------------------------------------------
from genview.evaluation.runs import CACHED_PROTOCOLS, protocol_names, result_file

EVALUATIONS = RESOLVED.evaluations
IMAGE_PROTOCOLS = [p for p in protocol_names(config) if p not in CACHED_PROTOCOLS]


def cached_protocols_json(wildcards):
    """The cached-feature protocols this config asks of the (experiment, dataset), with their settings."""
    return as_json(
        {
            protocol: settings
            for (experiment, protocol, dataset), settings in EVALUATIONS.items()
            if (experiment, dataset) == (wildcards.experiment, wildcards.dataset) and protocol in CACHED_PROTOCOLS
        }
    )


def protocol_settings_json(wildcards):
    return as_json(EVALUATIONS[wildcards.experiment, wildcards.protocol, wildcards.dataset])


def protocol_gpus(wildcards):
    return RULE_GPUS["evaluate"][wildcards.protocol]


def evaluation_outputs():
    return list(dict.fromkeys(result_file(e, p, d) for e, p, d in EVALUATIONS))


# --- reporting ------------------------------------------------------------------------------------------------------
from genview.report.tables import cell_sources

REPORT = config["report"]
# Relative to the working directory, so that moving the checkout (with its results) reruns no table job.
TABLES_FILE = os.path.relpath(Path(workflow.basedir, REPORT["tables"])) if REPORT["tables"] else None
TABLES = RESOLVED.tables


def table_inputs(name):
    return list(dict.fromkeys(result_file(e, p, d) for e, p, d in cell_sources(TABLES[name])))


# The tables with claims to decide (a direction stated against a reference column, over seeds): the claims summary.
CLAIM_TABLES = [
    name
    for name, spec in TABLES.items()
    if spec.get("seeds") and spec.get("compare_to") and any(c.get("expect") for c in spec["columns"])
]


def tsne_inputs():
    return [f"results/eval/{e}/features/{REPORT['tsne']['dataset']}.npz" for e in REPORT["tsne"]["panels"].values()]


def tsne_options():
    tsne = REPORT["tsne"]
    panels = [f"--panel {shlex.quote(f'{label}={path}')}" for label, path in zip(tsne["panels"], tsne_inputs())]
    title = f"t-SNE of {tsne['dataset']} features, {tsne['classes']} seeded-random classes"
    return " ".join(panels) + (
        f" --splits {' '.join(tsne['splits'])} --classes {tsne['classes']} --per-class {tsne['per_class']}"
        f" --perplexity {tsne['perplexity']} --seed {tsne['seed']} --title {shlex.quote(title)}"
    )


def gallery_inputs():
    dataset, shard = REPORT["gallery"]["dataset"], REPORT["gallery"]["shard"]
    inputs = {"shard": f"results/data/{dataset}/shards/{shard}.csv", **analysis_part_files(dataset, shard)}
    if "ic" in gallery_outputs():  # the masks beside the source images
        inputs["fit"] = f"results/analysis/{dataset}/fg_pca.npz"
    return inputs


def gallery_outputs():
    """IC gallery when the dataset's noise level is adaptive, TC gallery when its guidance is."""
    dataset = REPORT["gallery"]["dataset"]
    outputs = {}
    if needs_foreground(dataset):
        outputs["ic"] = "results/figures/gallery_ic.png"
    if needs_complexity(dataset):
        outputs["tc"] = "results/figures/gallery_tc.png"
    return outputs


def gallery_file_options(wildcards, input, output):
    """--fit/--out-ic and --out-tc for the galleries the dataset has (IC: adaptive noise; TC: adaptive guidance)."""
    options = [f"--fit {shlex.quote(input.fit)} --out-ic {shlex.quote(output.ic)}"] if "ic" in output.keys() else []
    return " ".join(options + ([f"--out-tc {shlex.quote(output.tc)}"] if "tc" in output.keys() else []))


def gallery_options():
    gallery = REPORT["gallery"]
    return (
        f"--images {gallery['images']} --noise-levels {' '.join(map(str, gallery['noise_levels']))}"
        f" --guidance-scales {' '.join(map(str, gallery['guidance_scales']))} --seed {config['seed']}"
    )


def quality_audit_inputs():
    dataset = REPORT["quality_audit"]["dataset"]
    return {
        "manifest": f"results/data/{dataset}/manifest.csv",
        "views": view_manifests(dataset),
        "vector": f"results/analysis/{dataset}/quality_pca.npz",
    }


def quality_audit_options():
    audit = REPORT["quality_audit"]
    return f"--sample {audit['sample']} --extremes {audit['extremes']} --seed {config['seed']}"


def checks_inputs(wildcards):
    checks = REPORT["checks"]
    dataset = checks["dataset"]
    shards = range(config["datasets"][dataset]["num_shards"])
    inputs = {
        "manifest": f"results/data/{dataset}/manifest.csv",
        "pixel_judge": "results/checks/pixel_judge.pt",
        "fit": f"results/analysis/{dataset}/fg_pca.npz",
        "vector": f"results/analysis/{dataset}/quality_pca.npz",
        "views": view_manifests(dataset),
        **{
            part: [analysis_part_files(dataset, shard)[part] for shard in shards]
            for part in analysis_parts(config, dataset)
        },
        "models": model_inputs("fg_encoder", "quality_encoder"),
        "metrics": [
            f"results/pretrain/{name}/metrics.jsonl"
            for name, experiment in EXPERIMENTS.items()
            if experiment["dataset"] == dataset
            and experiment["variant"] == "genview"
            and experiment["views"]["sources"]
        ],
    }
    if config["models"].get("trained_encoder"):
        inputs["unsupervised_encoder"] = f"{TRAINED_MODELS_DIR}/encoder_unsupervised/open_clip_config.json"
    tables = [checks[key] for key in ("learning_table", "zeroshot_table") if checks[key]]
    if tables:
        inputs["results"] = [path for table in tables for path in table_inputs(table)]
    return inputs


def checks_options():
    checks, analysis = REPORT["checks"], config["analysis"]
    options = (
        f"--sample {checks['sample']} --seed {config['seed']} --per-class {analysis['fg_sample_per_class']}"
        f" --sample-size {analysis['fg_sample_size']}"
        f" --noise-edges {shlex.quote(as_json(analysis['noise_edges']))}"
        f" --noise-levels {shlex.quote(as_json(analysis['noise_levels']))}"
    )
    if checks["learning_table"] or checks["zeroshot_table"]:
        options += f" --tables {shlex.quote(TABLES_FILE)}"
    if checks["learning_table"]:
        options += f" --learning-table {checks['learning_table']}"
        options += f" --learning-columns {shlex.quote(as_json(checks['learning_columns']))}"
    if checks["zeroshot_table"]:
        options += f" --zeroshot-table {checks['zeroshot_table']}"
    return options


def declared_gpus():
    """GPUs each rule's jobs declare (the cost table's GPU-hours), from the same settings the rules use."""
    return {
        **RULE_GPUS,
        "complexity_shard": COMPLEXITY_GPUS,
        "pretrain": {name: experiment["gpus"] for name, experiment in EXPERIMENTS.items()},
        "evaluate": {p: RULE_GPUS["evaluate"][p] for p in IMAGE_PROTOCOLS},
    }


def report_outputs(cost=True):
    outputs = [f"results/tables/{name}.html" for name in TABLES]
    if REPORT["tsne"]:
        outputs.append("results/figures/tsne.png")
    if REPORT["gallery"]:
        outputs += gallery_outputs().values()
    if REPORT["quality_audit"]:
        outputs.append("results/figures/quality_audit.png")
    if REPORT["checks"]:
        outputs.append("results/checks/ground_truth.md")
    if CLAIM_TABLES:
        outputs.append("results/tables/claims.html")
    if REPORT["cost"] and cost:
        outputs.append("results/tables/cost.csv")
    return outputs


def unknown_report_target(wildcards):
    known = [f"table_{name}" for name in TABLES] + [r.name for r in workflow.rules if r.name.startswith("figure_")]
    known += ["table_cost"] if REPORT["cost"] else []
    raise WorkflowError(
        f"{wildcards.target!r} is not a table or figure of this config; targets: {', '.join(sorted(known))}"
    )
