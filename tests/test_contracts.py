"""The output paths of genview/contracts.py against the rules: every rule writes a declared output, every declared
rule exists, and every file a finished run holds matches a declared path of the rule that wrote it."""

from __future__ import annotations

import csv
import io
import re

import pytest
from helpers import REPO, VENV_BIN, run_tool

from genview.contracts import OUTPUTS, Output, output_pattern

#: Rules that write no file: the default target and the error shown for an unknown report target.
NO_OUTPUT_RULES = {"all", "unknown_report_target"}


def _rule_pattern(rule: str):
    return re.compile(re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(rule)) + "$")


def rule_problems(rules: list[str], outputs=OUTPUTS) -> list[str]:
    """Rules that write no declared output, and declared rules that are no rule."""
    declared = [pattern for output in outputs for pattern in output.rules]
    problems = [
        f"rule {rule}: no output of genview.contracts.OUTPUTS names it"
        for rule in rules
        if rule not in NO_OUTPUT_RULES and not any(_rule_pattern(p).match(rule) for p in declared)
    ]
    problems += [
        f"OUTPUTS names {p!r}: no such rule" for p in declared if not any(_rule_pattern(p).match(r) for r in rules)
    ]
    return problems


def file_problems(written: list[tuple[str, str]], outputs=OUTPUTS) -> list[str]:
    """(file, rule) pairs of a finished run that no declared path of that rule matches."""
    return [
        f"{path} (rule {rule}): no path of genview.contracts.OUTPUTS for this rule matches it"
        for path, rule in written
        if not any(
            any(_rule_pattern(p).match(rule) for p in output.rules)
            and any(output_pattern(pattern).fullmatch(path) for pattern in output.paths)
            for output in outputs
        )
    ]


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
@pytest.mark.slow
def test_every_file_of_a_finished_run_matches_a_declared_path_of_its_rule(smoke_run):
    summary = run_tool(
        [VENV_BIN / "snakemake", "--summary", "--configfile", "config/smoke.yaml"], cwd=smoke_run.root
    ).stdout
    written = [(row["output_file"], row["rule"]) for row in csv.DictReader(io.StringIO(summary), delimiter="\t")]
    rules = {rule for _, rule in written}
    assert {"pretrain", "evaluate", "evaluate_cached", "generate_views", "table_cost"} <= rules, rules
    assert file_problems(written) == []
    # A wrong path is caught: the checkpoint declared under another name.
    moved = [
        Output(("results/pretrain/{experiment}/model.pt",), o.rules, o.what)
        if o.paths[0].endswith("checkpoint.pt")
        else o
        for o in OUTPUTS
    ]
    assert any("checkpoint.pt (rule pretrain)" in problem for problem in file_problems(written, moved))
