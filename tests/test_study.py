"""The ablation study (config/study.yaml): its settings are paired per seed, its whole plan resolves to every table
and claim, and a reduced study runs through one table of each kind, whose paired differences and intervals match a
plain re-computation from the result files."""

import csv
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO, job_counts, snakemake

from genview.config.load import load_config
from genview.data.shapes import make_shapes
from genview.evaluation.runs import read_result
from genview.training.data import PretrainDataset
from genview.training.experiments import resolve_experiments
from genview.training.network import build_model

STUDY = REPO / "config" / "study.yaml"
STUDY_TABLES = REPO / "config" / "tables_study.yaml"


@pytest.fixture(scope="module")
def study_experiments():
    return resolve_experiments(load_config(STUDY))


def _initial_weights(experiment):
    """The weights the trainer starts from (it seeds with the experiment's seed, then builds the model)."""
    torch.manual_seed(experiment["seed"])
    return build_model(experiment).state_dict()


def test_every_setting_of_a_seed_starts_from_the_same_weights(study_experiments):
    by_method_and_seed = itertools.groupby(
        sorted(study_experiments.values(), key=lambda e: (e["method"], e["seed"])),
        key=lambda e: (e["method"], e["seed"]),
    )
    compared = 0
    for _, group in by_method_and_seed:
        group = list(group)
        reference = _initial_weights(group[0])
        for experiment in group[1:]:
            weights = _initial_weights(experiment)
            assert all(torch.equal(reference[k], weights[k]) for k in reference), experiment["name"]
            compared += 1
    assert compared >= 20  # 7 SimCLR, 7 MoCo v2, 6 CLIP, 7 SLIP settings per seed
    # ... and another seed starts elsewhere (the pairing is by seed, not a shared initialisation).
    first, second = study_experiments["study_simclr_views_s0"], study_experiments["study_simclr_views_s1"]
    assert not torch.equal(*(_initial_weights(e)["backbone.1.0.weight"] for e in (first, second)))


def test_the_constant_noise_datasets_hold_the_study_images_and_each_sample_draws_the_same_view_slot(tmp_path):
    # A shapes image is a function of (seed, split, class, index): the study's training images whatever its test size.
    make_shapes(tmp_path / "a", train_per_class=2, test_per_class=3, seed=0)
    make_shapes(tmp_path / "b", train_per_class=2, test_per_class=1, seed=0)
    train = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("train/**/*.png"))
    assert train and all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in train)
    # Two view sets of the same images (noise 0 and 400, say): each sample of an epoch takes the same view slot.
    rows = pd.DataFrame({"id": [f"i{k}" for k in range(16)], "path": "x.png", "label": "a", "caption": "a"})

    def dataset(prefix):
        views = {"ic": {f"i{k}": [f"{prefix}/{k}_{s}.jpg" for s in range(4)] for k in range(16)}}
        return PretrainDataset(
            rows,
            mode="two_view",
            augmentation_preset="plain",
            image_size=8,
            min_scale=1.0,
            seed=3,
            views=views,
            sources=["ic"],
        )

    low, high = dataset("n0"), dataset("n400")
    for epoch in range(2):
        low.set_epoch(epoch), high.set_epoch(epoch)
        assert [low.generated_view(i).split("/")[1] for i in range(16)] == [
            high.generated_view(i).split("/")[1] for i in range(16)
        ]


@pytest.mark.workflow
def test_the_whole_study_plans_every_training_table_and_the_claims(workdir):
    plan = snakemake("-n", "--cores", "1", "--configfile", STUDY, workdir=workdir).stdout
    counts = job_counts(plan)
    tables = yaml.safe_load(STUDY_TABLES.read_text())
    assert counts["pretrain"] == 124 and counts["claims"] == 1
    assert {f"table_{name}" for name in tables} <= counts.keys()


# --- a reduced study through one table of each kind -----------------------------------------------------------------
TINY_SIZES = {"train_per_class": 4}
REDUCED = {
    "derive": {
        "from": "config/study.yaml",
        "each": {
            "recipe": {"epochs": 2, "warmup_epochs": 0, "batch_size": 16},
            "experiment": {"seeds": [0, 1], "quality": {"epoch_switch": 1}},
        },
    },
    "datasets": {
        "shapes_encoders": {"train_per_class": 4},
        "study": {"train_per_class": 4, "test_per_class": 3, "num_shards": 1},
        **dict.fromkeys(("study_n0", "study_n100", "study_n200", "study_n300", "study_n400"), TINY_SIZES),
        "study_fixed": TINY_SIZES,
    },
    "models": {"trained_encoder": {"steps": 10}},
    "analysis": {"fg_sample_per_class": 2},
}


#: Two tables, with the rows and columns kept: the SimCLR row of the GenView table (the random initialisation, one of
#: the five constant-noise datasets, adaptive views and GenView: every kind of column, claimed or not, and every kind
#: of study dataset; the other noise levels are the same dataset kind at another level, and MoCo v2's row is
#: SimCLR's runs with another loss), and CLIP's adaptive against fixed conditioning in zero-shot (the three sources
#: and the fixed dataset). The other tables, SLIP's γ sweep among them, render the same way from the same kinds of
#: runs; the full study's plan is dry-run above (the whole study plans every table).
REDUCED_TABLES = {
    "study_genview": ("SimCLR", ["random", "n0", "adaptive", "genview"]),
    "study_adaptive_zeroshot": (None, None),
}


@pytest.fixture(scope="module")
def reduced_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    tables = yaml.safe_load(re.sub(r"&seeds \[[0-9, ]+\]", "&seeds [0, 1]", STUDY_TABLES.read_text()))
    specs = {name: tables[name] for name in REDUCED_TABLES}
    for name, (row, columns) in REDUCED_TABLES.items():
        if row is not None:
            specs[name]["rows"] = [r for r in specs[name]["rows"] if r["label"] == row]
        if columns is not None:
            specs[name]["columns"] = [c for c in specs[name]["columns"] if c["key"] in columns]
            for kept in specs[name]["rows"]:
                kept["cells"] = {key: cell for key, cell in kept["cells"].items() if key in columns}
    (workdir / "tables.yaml").write_text(yaml.safe_dump(specs, sort_keys=False, allow_unicode=True))
    config = {**REDUCED, "report": {"tables": str(workdir / "tables.yaml")}}
    (workdir / "reduced.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/tables/{name}.csv" for name in specs]
    snakemake(*targets, "--cores", "all", "--configfile", workdir / "reduced.yaml", workdir=workdir, timeout=1800)
    return workdir, specs


def _runs(workdir: Path, experiment: str, cell: dict) -> list[float]:
    values = []
    for seed in (0, 1):
        where = (experiment.format(seed=seed), cell["protocol"], cell["dataset"])
        record = read_result(*where, root=str(workdir / "results/eval"))
        values.append(float(record["metrics"][cell["metric"]]))
    return values


def _plain_interval(values, reference):
    """mean(d) +- t(0.975, 1) * sd(d) / sqrt(2) over two seeds, t(0.975, 1) = 12.706 (a t table)."""
    d = [a - b for a, b in zip(values, reference)]
    mean = sum(d) / 2
    half = 12.7062047 * math.sqrt(sum((x - mean) ** 2 for x in d)) / math.sqrt(2)  # sd with n - 1 = 1
    return mean, mean - half, mean + half


@pytest.mark.workflow
@pytest.mark.slow
def test_every_study_table_shows_each_paired_difference_its_interval_and_the_claims_decision(reduced_study):
    workdir, specs = reduced_study
    checked = 0
    for name, spec in specs.items():
        with open(workdir / "results/tables" / f"{name}.csv") as handle:
            rows = {row["row"]: row for row in csv.DictReader(handle)}
        reference_key, versus = spec["compare_to"], f"vs_{spec['compare_to']}"
        for row in spec["rows"]:
            line = rows[row["label"]]
            reference = _runs(workdir, row["cells"][reference_key]["experiment"], spec["cell"])
            for column in spec["columns"]:
                key = column["key"]
                values = _runs(workdir, row["cells"][key]["experiment"], spec["cell"])
                assert float(line[key]) == pytest.approx(np.mean(values), abs=0.051)
                if key == reference_key:
                    continue
                mean, low, high = _plain_interval(values, reference)
                for suffix, value in (("", mean), ("_low", low), ("_high", high)):
                    assert float(line[f"{key}_{versus}{suffix}"]) == pytest.approx(value, abs=0.051), (name, key)
                expect = column.get("expect")
                if expect is None:  # the random initialisation: shown, no claim
                    continue
                decision = "undecided" if low <= 0 <= high else ("yes" if (low > 0) == (expect == "higher") else "no")
                assert line[f"{key}_{versus}_decision"] == decision
                checked += 1
    # genview (SimCLR: a noise level and the weights), adaptive against fixed (zero-shot)
    assert checked == 2 + 1
