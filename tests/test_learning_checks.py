"""The learning checks (genview.report.checks.learning_checks) against hand computations on written result files."""

import json

import pytest

from genview.report.checks import GAP_CLOSED_GOAL, goal, learning_checks, render_checks_markdown
from genview.report.tables import expand_spec

# Per seed 0, 1, 2: the baseline closes (51 - 31) / (80 - 31) = 0.408 of the gap; + views leads the baseline by
# 5, 4, 5 points (a paired interval above zero) although the seeds spread the baseline by 4.6 points; + GenView by
# 1, -1, 2 (an interval containing zero).
RUNS = {
    "random": [30.0, 32.0, 31.0],
    "supervised": [80.0, 78.0, 82.0],
    "baseline": [50.0, 56.0, 47.0],
    "views": [55.0, 60.0, 52.0],
    "genview": [51.0, 55.0, 49.0],
}
ROLES = {role: role for role in RUNS}


def learning_table(root, runs=RUNS, seeds=(0, 1, 2)):
    for role, values in runs.items():
        for seed, value in zip(seeds, values):
            path = root / f"{role}_s{seed}" / "cached" / "d.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"linear_fast": {"metrics": {"top1": value}}}))
    return expand_spec(
        {
            "title": "learning",
            "seeds": list(seeds),
            "compare_to": "baseline",
            "cell": {"protocol": "linear_fast", "dataset": "d", "metric": "top1"},
            "columns": [{"key": role, "label": role, "cell": {"experiment": f"{role}_s{{seed}}"}} for role in runs],
            "rows": [{"label": "SimCLR"}],
        }
    )


def test_goal_records_value_threshold_and_pass():
    assert goal("g", 0.6, 0.5) == {
        "goal": "g",
        "value": 0.6,
        "threshold": 0.5,
        "direction": ">=",
        "passed": True,
        "detail": None,
    }
    assert goal("g", 0.5, 0.5)["passed"] and not goal("g", 0.5, 0.5, strict=True)["passed"]
    assert goal("g", 0.4, 0.5, higher=False)["passed"] and goal("g", None, 0.5)["passed"] is None


def test_gap_closed_and_paired_differences_against_a_hand_computation(tmp_path):
    (row,) = learning_checks(learning_table(tmp_path), tmp_path, ROLES)
    assert row["gap_closed"] == pytest.approx((51 - 31) / (80 - 31), abs=1e-3)
    assert row["learned"] is True
    # d = (5, 4, 5): mean 4.667, sd 0.577; t(0.975, 2) = 4.3027 from a t table.
    half = 4.302653 * 0.57735 / 3**0.5
    views = row["views_minus_baseline"]
    assert (views["difference"], views["low"], views["high"]) == pytest.approx(
        (4.667, 4.667 - half, 4.667 + half), abs=0.01
    )
    goals = {entry["goal"]: entry for entry in row["goals"]}
    gap = goals["SimCLR: share of the random → supervised gap the baseline closes"]
    assert gap["threshold"] == GAP_CLOSED_GOAL == 0.5 and gap["passed"] is False
    assert goals["SimCLR: + views − baseline, 95 % interval's lower end"]["passed"] is True
    assert goals["SimCLR: + GenView − baseline, 95 % interval's lower end"]["passed"] is False
    markdown = render_checks_markdown({"about": "", "learning": [row]})
    assert "| SimCLR | 31.0 ± 1.0 | 80.0 ± 2.0 | 51.0 ± 4.6 | 0.41 | +4.7 [+3.2, +6.1] |" in markdown


def test_a_baseline_that_closes_most_of_the_gap_passes(tmp_path):
    runs = {**RUNS, "baseline": [70.0, 72.0, 71.0]}
    (row,) = learning_checks(learning_table(tmp_path, runs), tmp_path, ROLES)
    assert row["gap_closed"] == pytest.approx(40 / 49, abs=1e-3) and row["goals"][0]["passed"] is True


def test_a_baseline_within_its_random_initialisation_learned_nothing(tmp_path):
    runs = {"random": [30.0, 36.0, 31.0], "baseline": [33.0, 32.0, 35.0]}
    (row,) = learning_checks(learning_table(tmp_path, runs), tmp_path, {"random": "random", "baseline": "baseline"})
    assert row["learned"] is False and row["goals"] == []
    assert "learned nothing measurable" in render_checks_markdown({"about": "", "learning": [row]})
