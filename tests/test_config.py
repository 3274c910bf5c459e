import copy

import pytest
import yaml

from conftest import REPO, snakemake
from genview.config import fill_defaults, load_config, load_schema, validate_config
from genview.errors import ConfigError


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_validate(name):
    config = load_config(REPO / "config" / name)
    assert config["datasets"]


def test_defaults_are_filled_per_kind():
    config = validate_config(
        {
            "datasets": {
                "a": {"kind": "csv", "root": "/x", "file": "a.csv"},
                "b": {"kind": "imagefolder", "root": "/y"},
                "c": {"kind": "shapes"},
            }
        }
    )
    assert config["seed"] == 0 and config["eval_datasets"] == {}
    a, b, c = (config["datasets"][k] for k in "abc")
    assert a["image_column"] == "image" and a["caption_column"] == "caption" and a["label_column"] is None
    assert "image_column" not in b and b["splits"] == {"train": "train"} and b["captions"] is None
    assert c["image_size"] == 64 and c["train_per_class"] == 20 and "root" not in c
    for spec in (a, b, c):
        assert spec["num_shards"] == 1 and spec["on_bad_image"] == "skip"


def test_fill_defaults_does_not_override_given_values():
    schema = load_schema()
    config = {"seed": 7, "datasets": {"s": {"kind": "shapes", "image_size": 96}}}
    fill_defaults(config, schema)
    assert config["seed"] == 7 and config["datasets"]["s"]["image_size"] == 96


BASE = {"datasets": {"shapes": {"kind": "shapes", "num_shards": 2}}}


def _with(path, value):
    config = copy.deepcopy(BASE)
    node = config
    *parents, last = path
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


@pytest.mark.parametrize(
    "config, expected",
    [
        (_with(["colour"], "red"), "colour: unknown key"),
        (_with(["datasets", "shapes", "colour"], "red"), "datasets.shapes.colour: unknown key"),
        (_with(["datasets", "shapes", "num_shards"], "two"), "datasets.shapes.num_shards: 'two' is not of type"),
        (_with(["datasets", "shapes", "num_shards"], -1), "datasets.shapes.num_shards: -1 is less than the minimum"),
        (_with(["datasets", "shapes", "kind"], "parquet"), "datasets.shapes.kind: 'parquet' is not one of"),
        (_with(["datasets", "shapes", "on_bad_image"], "ignore"), "datasets.shapes.on_bad_image: 'ignore' is not one"),
        (_with(["datasets", "web"], {"kind": "csv", "root": "/d"}), "datasets.web: 'file' is a required property"),
        (_with(["eval_datasets", "c10"], {"kind": "torchvision", "root": "/d"}), "eval_datasets.c10: 'name' is a"),
        (_with(["datasets", "x"], {"kind": "imagefolder", "root": "/d", "file": "a.csv"}), "datasets.x.file: unknown"),
        (_with(["seed"], -3), "seed: -3 is less than the minimum"),
    ],
)
def test_bad_config_names_the_key(config, expected):
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert expected in str(error.value)


def test_all_problems_are_reported_at_once():
    config = _with(["datasets", "shapes", "num_shards"], -1)
    config["typo"] = 1
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert "2 problem(s)" in str(error.value)
    assert "typo: unknown key" in str(error.value) and "num_shards" in str(error.value)


def test_unreadable_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.workflow
def test_snakemake_stops_on_bad_config_before_any_job(workdir):
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(["datasets", "shapes", "num_shards"], -1)))
    result = snakemake("-n", "--cores", "1", "--configfile", bad, workdir=workdir, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "datasets.shapes.num_shards: -1 is less than the minimum of 1" in output
    assert "rule " not in result.stdout


def test_configuration_reference_is_current():
    """docs/configuration.md is generated from the schema (`genview config docs`); edit the schema, then rerun it."""
    from genview.config_docs import DOCS_PATH, render_configuration_docs

    assert DOCS_PATH.read_text() == render_configuration_docs(), "run `python -m genview config docs`"
    text = DOCS_PATH.read_text()
    for key in ("`pretrain`", "`lr_scaling`", "`multi_crop`", "`analysis.fg_flipped_threshold`", "`standalone`"):
        assert key in text, key
