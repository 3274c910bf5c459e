# Config validation, wildcard constraints and input functions. Only light imports: every job re-parses this.
import json
import os
import re
from pathlib import Path

from genview.config import dataset_generation, derive_config, load_schema, validate_config
from genview.data import SYNTHETIC_LAYOUT_KEYS, SYNTHETIC_MARKER, SYNTHETIC_ROOT, dataset_root
from genview.errors import ConfigError

try:
    # A derived config (config/rehearsal.yaml) is resolved onto its base first; the global dict is updated in place.
    _resolved = derive_config(config, workflow.basedir, "config")
    if _resolved is not config:
        config.clear()
        config.update(_resolved)
    validate_config(config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None

TRAIN_DATASETS = sorted(config["datasets"])
ALL_DATASETS = {**config["eval_datasets"], **config["datasets"]}
SHAPES_DATASETS = sorted(name for name, spec in ALL_DATASETS.items() if spec["kind"] == "shapes")
# Datasets the workflow writes in their own kind's format (rule make_synthetic), by root.
SYNTHETIC_ROOTS = {
    SYNTHETIC_ROOT.format(name=n): n for n, spec in ALL_DATASETS.items() if spec.get("synthetic")
}
for _root, _name in SYNTHETIC_ROOTS.items():
    if os.path.normpath(ALL_DATASETS[_name]["root"]) != _root:
        raise WorkflowError(f"{_name}.root: a synthetic dataset is written to {_root}; set its root to that")


def _alternatives(names):
    # A pattern that matches nothing when the list is empty, so rules without datasets stay unambiguous.
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(ALL_DATASETS),
    shard=r"\d+",
    source="ic|tc|itc",
    experiment=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    protocol=r"[a-z][a-z0-9_]*",


def dataset_spec_json(wildcards):
    return json.dumps(ALL_DATASETS[wildcards.dataset], sort_keys=True)


def synthetic_spec_json(wildcards):
    spec = ALL_DATASETS[wildcards.dataset]
    return json.dumps({key: spec[key] for key in SYNTHETIC_LAYOUT_KEYS if key in spec}, sort_keys=True)


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
    outputs = expand("results/data/{dataset}/manifest.csv", dataset=sorted(ALL_DATASETS))
    for dataset in TRAIN_DATASETS:
        outputs += view_manifests(dataset)  # implies every shard and every shard's views
    return outputs + foreground_fits() + pretrain_outputs() + evaluation_outputs()


# --- models -------------------------------------------------------------------------------------------------------
from genview.models.tiny import TINY_MARKERS

TINY_MODELS_DIR = "results/models/tiny"
# The dress rehearsal's random-weight models at the real architectures, one folder per size (rule
# build_rehearsal_models): results/models/rehearsal/{full,small}/<role>.
REHEARSAL_MODELS_DIR = "results/models/rehearsal"
REHEARSAL_SIZES = ("full", "small")
REHEARSAL_BUILD_GPUS = {"full": 1, "small": 0}  # the full size is built on the GPU it will run on


def model_location(role):
    spec = config["models"][role]
    return (spec.get("path") or spec["model"]).removeprefix("local-dir:")


def model_inputs(*roles):
    """The stand-in files a job needs when a role points at the tiny or rehearsal models the workflow builds; real
    checkpoints (hub ids or local folders) are the user's and are not tracked."""
    inputs = []
    for role in roles:
        location = Path(model_location(role))
        if location == Path(TINY_MODELS_DIR, role):
            inputs.append(f"{TINY_MODELS_DIR}/{TINY_MARKERS[role]}")
        elif location.name == role and location.parent.parent == Path(REHEARSAL_MODELS_DIR):
            if location.parent.name not in REHEARSAL_SIZES:
                raise WorkflowError(f"models.{role}: {location} is not a rehearsal size ({REHEARSAL_SIZES})")
            inputs.append(f"{location.parent}/{TINY_MARKERS[role]}")
    return inputs


# GPUs per job of the rules with a fixed count: their `gpu` resources and the cost table's GPU-hours read it.
RULE_GPUS = {
    "fit_foreground": 1,
    "foreground_shard": 1,
    "generate_views": 1,
    "fit_quality_vector": 1,
    "extract_features": 1,
    "figure_gallery": 1,
    "figure_quality": 1,
}


def as_json(value):
    return json.dumps(value, sort_keys=True)


# --- analysis and generation ----------------------------------------------------------------------------------------
def _adaptive(dataset, source, key):
    return dataset_generation(config, dataset)[source].get(key) == "adaptive"


def needs_foreground(dataset):
    sources = config["datasets"][dataset]["sources"]
    return any(s in sources and _adaptive(dataset, s, "noise_level") for s in ("ic", "itc"))


def needs_complexity(dataset):
    sources = config["datasets"][dataset]["sources"]
    return any(s in sources and _adaptive(dataset, s, "guidance_scale") for s in ("tc", "itc"))


def generation_json(wildcards):
    return as_json(dataset_generation(config, wildcards.dataset))


def params_parts(wildcards):
    parts = {}
    if needs_foreground(wildcards.dataset):
        parts["foreground"] = "results/analysis/{dataset}/foreground/{shard}.csv".format(**wildcards)
    if needs_complexity(wildcards.dataset):
        parts["complexity"] = "results/analysis/{dataset}/complexity/{shard}.csv".format(**wildcards)
    return parts


def params_options(wildcards, input):
    return " ".join(
        f"--{name} {path}" for name, path in input.items() if name in ("foreground", "complexity")
    )


def complexity_gpus(wildcards):
    return 1 if config["analysis"]["complexity_scorer"] == "llm" else 0


def complexity_models(wildcards):
    return model_inputs("complexity_llm") if config["analysis"]["complexity_scorer"] == "llm" else []


def generation_model_inputs(wildcards):
    return model_inputs("text2img" if wildcards.source == "tc" else "unclip")


def generation_model_json(wildcards):
    return as_json(config["models"]["text2img" if wildcards.source == "tc" else "unclip"])


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
from genview.training.experiments import resolve_experiments

try:
    EXPERIMENTS = resolve_experiments(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None


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
    return f"--quality-vector {input.quality_vector}" if "quality_vector" in input.keys() else ""


def experiment_resource(key):
    return lambda wildcards: EXPERIMENTS[wildcards.experiment][key]


def pretrain_outputs():
    return expand("results/pretrain/{experiment}/checkpoint.pt", experiment=sorted(EXPERIMENTS))


# --- evaluation -----------------------------------------------------------------------------------------------------
from genview.evaluation.runs import protocol_names, resolve_evaluations

try:
    EVALUATIONS = resolve_evaluations(config, EXPERIMENTS)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

PROTOCOLS_NEEDING_GPU = ("linear", "semisup", "zeroshot", "retrieval")


def protocol_settings_json(wildcards):
    return as_json(EVALUATIONS[wildcards.experiment, wildcards.protocol, wildcards.dataset])


def protocol_gpus(wildcards):
    return 1 if wildcards.protocol in PROTOCOLS_NEEDING_GPU else 0


def evaluation_outputs():
    return [f"results/eval/{e}/{p}/{d}.json" for e, p, d in EVALUATIONS]


# --- reporting ------------------------------------------------------------------------------------------------------
import shlex
from types import SimpleNamespace

from genview.report.specs import check_sources, load_table_specs
from genview.report.tables import cell_sources

REPORT = config["report"]
TABLES_FILE = Path(workflow.basedir, REPORT["tables"]) if REPORT["tables"] else None


def _report_error(key, message):
    raise WorkflowError(f"report.{key}: {message}")


def _table_specs():
    if TABLES_FILE is None:
        return {}
    try:
        specs = load_table_specs(TABLES_FILE)
        check_sources(specs, EVALUATIONS, REPORT["tables"])
    except ConfigError as error:
        raise WorkflowError(str(error)) from None
    return specs


TABLES = _table_specs()


def table_inputs(name):
    return [f"results/eval/{e}/{p}/{d}.json" for e, p, d in cell_sources(TABLES[name])]


def _check_training_dataset(key):
    dataset = REPORT[key]["dataset"]
    if dataset not in TRAIN_DATASETS:
        _report_error(
            f"{key}.dataset", f"{dataset!r} is not a training dataset of this config ({TRAIN_DATASETS})"
        )
    return dataset


def tsne_inputs():
    return [
        f"results/eval/{e}/features/{REPORT['tsne']['dataset']}.npz"
        for e in REPORT["tsne"]["panels"].values()
    ]


def tsne_options():
    tsne = REPORT["tsne"]
    panels = [
        f"--panel {shlex.quote(f'{label}={path}')}" for label, path in zip(tsne["panels"], tsne_inputs())
    ]
    title = f"t-SNE of {tsne['dataset']} features, {tsne['classes']} seeded-random classes"
    return " ".join(panels) + (
        f" --splits {' '.join(tsne['splits'])} --classes {tsne['classes']} --per-class {tsne['per_class']}"
        f" --perplexity {tsne['perplexity']} --seed {tsne['seed']} --title {shlex.quote(title)}"
    )


def gallery_inputs():
    dataset, shard = REPORT["gallery"]["dataset"], REPORT["gallery"]["shard"]
    inputs = {
        "shard": f"results/data/{dataset}/shards/{shard}.csv",
        "params": f"results/analysis/{dataset}/params/{shard}.csv",
    }
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
    options = [f"--fit {input.fit} --out-ic {output.ic}"] if "ic" in output.keys() else []
    return " ".join(options + ([f"--out-tc {output.tc}"] if "tc" in output.keys() else []))


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


def declared_gpus():
    """GPUs each rule's jobs declare (the cost table's GPU-hours), from the same settings the rules use."""
    gpus = dict(RULE_GPUS)
    gpus["complexity_shard"] = complexity_gpus(None)
    gpus["build_rehearsal_models"] = REHEARSAL_BUILD_GPUS
    gpus["pretrain"] = {name: experiment["gpus"] for name, experiment in EXPERIMENTS.items()}
    gpus["evaluate"] = {p: protocol_gpus(SimpleNamespace(protocol=p)) for p in protocol_names(config)}
    return gpus


def report_outputs(cost=True):
    outputs = [f"results/tables/{name}.html" for name in TABLES]
    if REPORT["tsne"]:
        outputs.append("results/figures/tsne.png")
    if REPORT["gallery"]:
        outputs += gallery_outputs().values()
    if REPORT["quality_audit"]:
        outputs.append("results/figures/quality_audit.png")
    if REPORT["cost"] and cost:
        outputs.append("results/tables/cost.csv")
    return outputs


if REPORT["tsne"]:
    if REPORT["tsne"]["dataset"] not in ALL_DATASETS:
        _report_error("tsne.dataset", f"{REPORT['tsne']['dataset']!r} is not a dataset of this config")
    _unknown = sorted(set(REPORT["tsne"]["panels"].values()) - set(EXPERIMENTS))
    if _unknown:
        _report_error("tsne.panels", f"unknown experiment(s) {_unknown}")
if REPORT["gallery"]:
    _dataset = _check_training_dataset("gallery")
    if REPORT["gallery"]["shard"] >= config["datasets"][_dataset]["num_shards"]:
        _report_error(
            "gallery.shard", f"{_dataset} has {config['datasets'][_dataset]['num_shards']} shard(s)"
        )
    if not gallery_outputs():
        _report_error("gallery", f"{_dataset} has no adaptive noise level or guidance scale to show")
if REPORT["quality_audit"]:
    _check_training_dataset("quality_audit")
