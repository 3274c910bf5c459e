"""The output paths of genview/contracts.py against the rules: every rule writes a declared output and every declared
rule exists. (Every file of a finished run matching a declared path of the rule that wrote it is checked on the shared
smoke run, in tests/test_smoke_run.py.)"""

from __future__ import annotations

import re

import pytest
from helpers import REPO, VENV_BIN, rule_problems, run_tool

from genview.contracts import OUTPUTS, Output, output_pattern


def listed_rules(*args) -> list[str]:
    listing = run_tool([VENV_BIN / "snakemake", "--list-rules", *args], cwd=REPO).stdout
    return [line.strip() for line in listing.splitlines() if re.fullmatch(r"\w+", line.strip())]


def test_output_patterns_match_what_they_say():
    assert output_pattern("results/views/{dataset}/{source}/{shard}/*.jpg").fullmatch("results/views/s/ic/0/a_1_x.jpg")
    assert not output_pattern("results/views/{dataset}/{source}/{shard}/*.jpg").fullmatch("results/views/s/ic/0.jpg")
    assert output_pattern("results/models/tiny/{role}/").fullmatch("results/models/tiny/unclip/unet/config.json")
    assert not output_pattern("results/data/{dataset}/manifest.csv").fullmatch("results/data/a/b/manifest.csv")


@pytest.mark.workflow
def test_every_rule_writes_a_declared_output_and_every_declared_rule_exists():
    rules = listed_rules()  # the default config: its tables' rules and the rules of every stage
    assert {"table_knn", "shard_shapes", "build_rehearsal_models"} <= set(rules)
    assert rule_problems(rules) == []
    # A wrong declaration is caught: a rule left out, a rule that does not exist.
    without_fit = [output for output in OUTPUTS if output.rules != ("fit_quality_vector",)]
    assert rule_problems(rules, without_fit) == [
        "rule fit_quality_vector: no output of genview.contracts.OUTPUTS names it"
    ]
    renamed = [*OUTPUTS, Output(("results/x",), ("figure_tsne_old",), "")]
    assert rule_problems(rules, renamed) == ["OUTPUTS names 'figure_tsne_old': no such rule"]


@pytest.mark.workflow
def test_the_vocabularys_rule_tables_name_rules_that_exist():
    """RULE_GPUS and RULE_PRIORITIES are read by rule name: a renamed rule must not leave a stale entry behind."""
    from genview.vocabulary import RULE_GPUS, RULE_PRIORITIES

    rules = set(listed_rules())
    assert set(RULE_GPUS) - rules == set() and set(RULE_PRIORITIES) - rules == set()
    assert "train_pixel_judge" in RULE_PRIORITIES and "pretrain" not in RULE_PRIORITIES
