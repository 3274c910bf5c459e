# Config validation, wildcard constraints and input functions. Only light imports: every job re-parses this.
import json
import re
from pathlib import Path

from genview.config import load_schema, validate_config
from genview.data import dataset_root
from genview.errors import ConfigError

try:
    validate_config(config, load_schema(Path(workflow.basedir) / "config" / "schema.yaml"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None

TRAIN_DATASETS = sorted(config["datasets"])
ALL_DATASETS = {**config["eval_datasets"], **config["datasets"]}
SHAPES_DATASETS = sorted(name for name, spec in ALL_DATASETS.items() if spec["kind"] == "shapes")


def _alternatives(names):
    # A pattern that matches nothing when the list is empty, so rules without datasets stay unambiguous.
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(ALL_DATASETS),
    shard=r"\d+",


def dataset_spec_json(wildcards):
    return json.dumps(ALL_DATASETS[wildcards.dataset], sort_keys=True)


def index_inputs(wildcards):
    """Generated datasets are made by a rule; external ones are read in place and not tracked file by file."""
    spec = ALL_DATASETS[wildcards.dataset]
    if spec["kind"] == "shapes":
        return [f"{dataset_root(wildcards.dataset, spec)}/captions.csv"]
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
        outputs += shard_files(dataset)
    return outputs
