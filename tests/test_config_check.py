"""Every config mistake is caught before any job runs, by the same resolver in `genview config check` and in the
Snakefile: the message names the key path (inside matrix entries too), all problems come at once, and nothing is
scheduled. Also: how --configfile files combine (merge, or replace for a standalone config)."""

import copy

import pytest
import yaml
from helpers import REPO, job_counts, placeholder_paper_config, raw_config, snakemake

from genview.cli import main
from genview.config.load import load_config, workflow_config
from genview.config.resolve import resolve_config
from genview.errors import ConfigError

pytestmark = pytest.mark.workflow


def problems_of(config: dict) -> str:
    with pytest.raises(ConfigError) as error:
        resolve_config(copy.deepcopy(config), REPO)
    return str(error.value)


def imagefolder(root, splits=("train", "val"), flat=()):
    for split in splits:
        folder = root / split
        if split in flat:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
        else:
            (folder / "n01440764").mkdir(parents=True, exist_ok=True)
    return {"kind": "imagefolder", "root": str(root), "splits": {"train": "train", "test": "val"}}


def test_each_mistake_is_named_with_its_key(tmp_path):
    config = raw_config("smoke.yaml")
    config["eval_datasets"] = {
        "missing_root": {"kind": "torchvision", "name": "CIFAR10", "root": str(tmp_path / "nowhere")},
        "imagenet_flat": imagefolder(tmp_path / "imagenet", flat=("val",)),
        "birds": imagefolder(tmp_path / "birds"),  # an image folder nobody knows the class names of
    }
    config["evaluation"]["runs"] += [
        {
            "protocols": ["knn"],
            "experiments": ["shapes_simclr_baseline"],
            "datasets": ["missing_root", "imagenet_flat"],
        },
        {"protocols": ["zeroshot"], "experiments": ["shapes_clip_baseline"], "datasets": ["birds"]},
    ]
    config["models"] = {"quality_encoder": {"model": f"local-dir:{tmp_path / 'no_encoder'}"}}
    config["pretrain"]["matrix"][0]["methods"].append("simclrr")
    config["pretrain"]["matrix"][0]["method_args"]["simclr"]["proj_dimm"] = 8
    message = problems_of(config)
    for expected in (
        "eval_datasets.missing_root.root: folder", "does not exist",
        "eval_datasets.imagenet_flat.splits.test:", "holds 1 image(s) directly, not one folder per class",
        "eval_datasets.birds: zero-shot classification has no class names and prompts",
        f"models.quality_encoder: local model folder {tmp_path / 'no_encoder'} does not exist",
        "pretrain.matrix[0].methods: unknown method 'simclrr'",
        "pretrain.matrix[0].method_args.simclr: unknown option(s) ['proj_dimm']",
    ):  # fmt: skip
        assert expected in message, (expected, message)
    assert "6 problem(s) found before any job ran" in message  # all at once


def test_a_schema_error_inside_a_matrix_entry_names_the_key():
    config = raw_config("smoke.yaml")
    config["pretrain"]["matrix"][0]["epochs"] = 3  # a recipe key in the wrong place
    message = problems_of(config)
    assert "pretrain.matrix.0.epochs: unknown key (allowed here:" in message
    assert "Unevaluated properties" not in message


def test_the_cli_and_the_snakefile_report_the_same_problems_and_schedule_nothing(tmp_path, workdir, capsys):
    config = raw_config("smoke.yaml")
    config["datasets"]["shapes"]["sources"] = ["ic", "tcc"]
    config["pretrain"]["matrix"][2]["methods"] = ["clip", "slipp"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["config", "check", str(path)]) == 2
    cli = capsys.readouterr().err
    assert "datasets.shapes.sources.1: 'tcc' is not one of" in cli
    config["datasets"]["shapes"]["sources"] = ["ic", "tc"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["config", "check", str(path)]) == 2
    cli = capsys.readouterr().err
    assert "pretrain.matrix[2].methods: unknown method 'slipp'" in cli
    result = snakemake("-n", "--cores", "1", "--configfile", path, workdir=workdir, check=False)
    assert result.returncode != 0 and "pretrain.matrix[2].methods: unknown method 'slipp'" in result.stdout
    assert "Job stats" not in result.stdout  # nothing was scheduled
    assert not (workdir / "results").exists()


def test_paper_config_checks_the_filesystem_and_passes_on_placeholder_data(tmp_path, capsys):
    assert main(["config", "check", str(REPO / "config/paper.yaml")]) == 2
    assert "datasets.imagenet1k.root: folder /datasets/imagenet does not exist" in capsys.readouterr().err
    path = tmp_path / "paper.yaml"
    placed = placeholder_paper_config(path, tmp_path / "data")
    assert main(["config", "check", str(path)]) == 0
    assert "valid (42 experiment(s)" in capsys.readouterr().out
    placed["check_files"] = False
    placed["datasets"]["imagenet1k"]["root"] = "/nowhere"
    path.write_text(yaml.safe_dump(placed, sort_keys=False))
    assert main(["config", "check", str(path)]) == 0 and "files not checked" in capsys.readouterr().out


def test_configfiles_merge_into_the_default_unless_standalone(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seed: 7\nanalysis: {fg_cdf: 0.6}\n")
    merged = workflow_config([overlay])
    default = load_config(REPO / "config/config.yaml")
    assert merged["seed"] == 7 and merged["analysis"]["fg_cdf"] == 0.6
    assert merged["datasets"].keys() == default["datasets"].keys() and merged["pretrain"]["matrix"]
    site = tmp_path / "site.yaml"
    site.write_text("datasets: {imagenet1k: {root: /scratch/imagenet}}\n")
    paper = workflow_config([REPO / "config/paper.yaml", site])
    assert "shapes" not in paper["datasets"] and paper["datasets"]["imagenet1k"]["root"] == "/scratch/imagenet"
    assert paper["datasets"]["imagenet1k"]["num_shards"] == 256  # the rest of the paper entry stays


def test_snakemake_merges_an_overlay_and_replaces_with_a_standalone_config(tmp_path, workdir):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("datasets: {shapes: {num_shards: 3}}\n")
    result = snakemake("-n", "--cores", "1", "--configfile", overlay, workdir=workdir)
    assert "shard_shapes" in result.stdout and "results/data/shapes/shards/2.csv" in result.stdout
    placeholder_paper_config(tmp_path / "paper.yaml", tmp_path / "data")
    site = tmp_path / "site.yaml"
    site.write_text("datasets: {cc3m: {num_shards: 2}}\n")
    result = snakemake("-n", "--cores", "1", "--configfile", tmp_path / "paper.yaml", site, workdir=workdir)
    assert "make_shapes" not in job_counts(result.stdout) and "results/data/cc3m/shards/1.csv" in result.stdout
    assert "results/data/cc3m/shards/2.csv" not in result.stdout


def test_an_unknown_table_target_lists_the_tables(workdir):
    result = snakemake("table_learnin", "-n", "--cores", "1", workdir=workdir, check=False)
    assert result.returncode != 0
    assert "'table_learnin' is not a table or figure of this config; targets:" in result.stdout
    assert "table_learning," in result.stdout and "figure_tsne" in result.stdout
