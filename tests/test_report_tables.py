"""Golden tests for the result tables: exact Markdown, LaTeX and CSV from fixture result files."""

import json
from pathlib import Path

import pytest

from genview.errors import BadInputError, ConfigError
from genview.report.tables import (
    cell_sources,
    expand_spec,
    gain_lines,
    load_cells,
    mark_best,
    render_csv,
    render_latex,
    render_markdown,
    render_table,
    validate_spec,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "report"


def _cell(experiment, protocol, dataset, metric, paper=None):
    return {
        "experiment": experiment,
        "protocol": protocol,
        "dataset": dataset,
        "metric": metric,
        "paper": paper,
    }


SPEC = {
    "title": "Linear & k-NN evaluation (top_1, %)",
    "caption": "Reproduced values; the paper's value and the difference in parentheses.",
    "group_label": "Method",
    "row_label": "Model",
    "columns": [
        {"key": "in1k", "label": "ImageNet-1K linear"},
        {"key": "c10", "label": "CIFAR-10 k-NN"},
        {"key": "err", "label": "Error_top1 %", "higher_is_better": False},
    ],
    "rows": [
        {
            "label": "r50_baseline",
            "group": "MoCo v2",
            "cells": {
                "in1k": _cell("baseline_r50", "linear", "imagenet1k", "top1", 71.1),
                "c10": _cell("baseline_r50", "knn", "cifar10", "top1"),
                "err": _cell("baseline_r50", "linear", "imagenet1k", "top1_error", 28.9),
            },
        },
        {
            "label": "+ GenView",
            "group": "MoCo v2",
            "cells": {
                "in1k": _cell("genview_r50", "linear", "imagenet1k", "top1", 73.5),
                "c10": _cell("genview_r50", "knn", "cifar10", "top1", 89.9),
                "err": _cell("genview_r50", "linear", "imagenet1k", "top1_error", 26.5),
            },
        },
        {
            "label": "+ GenView",
            "group": "SimSiam",
            "cells": {
                "in1k": _cell("simsiam_r50_genview", "linear", "imagenet1k", "top1", 72.0),
                "c10": _cell("simsiam_r50_genview", "knn", "cifar10", "top1"),
            },
        },
    ],
    "best": "column",
    "digits": 1,
}

EXPECTED_MARKDOWN = """\
## Linear & k-NN evaluation (top_1, %)

| Method | Model | ImageNet-1K linear | CIFAR-10 k-NN | Error_top1 % |
|---|---|---:|---:|---:|
| MoCo v2 | r50_baseline | 71.3 (paper 71.1, +0.2) | **90.0** | 28.7 (paper 28.9, -0.2) |
| MoCo v2 | + GenView | **73.2** (paper 73.5, -0.3) | **90.0** (paper 89.9, +0.1) | **26.8** (paper 26.5, +0.3) |
| SimSiam | + GenView | — [1] | — [2] |  |

Reproduced values; the paper's value and the difference in parentheses.

Missing results (— [n] in the table):

1. eval/simsiam_r50_genview/linear/imagenet1k.json
2. metric 'top1' in eval/simsiam_r50_genview/cached/cifar10.json
"""

EXPECTED_LATEX = r"""\begin{table}[t]
\centering
\caption{Linear \& k-NN evaluation (top\_1, \%). Reproduced values; the paper's value and the difference in parentheses.}
\begin{tabular}{llrrr}
\toprule
Method & Model & ImageNet-1K linear & CIFAR-10 k-NN & Error\_top1 \% \\
\midrule
MoCo v2 & r50\_baseline & 71.3 {\scriptsize (71.1, +0.2)} & \textbf{90.0} & 28.7 {\scriptsize (28.9, -0.2)} \\
 & + GenView & \textbf{73.2} {\scriptsize (73.5, -0.3)} & \textbf{90.0} {\scriptsize (89.9, +0.1)} & \textbf{26.8} {\scriptsize (26.5, +0.3)} \\
SimSiam & + GenView & -- & -- &  \\
\bottomrule
\end{tabular}
\end{table}
% missing: eval/simsiam_r50_genview/linear/imagenet1k.json
% missing: metric 'top1' in eval/simsiam_r50_genview/cached/cifar10.json
"""

EXPECTED_CSV = """\
row,group,in1k,in1k_paper,in1k_diff,in1k_missing,c10,c10_paper,c10_diff,c10_missing,err,err_paper,err_diff,err_missing
r50_baseline,MoCo v2,71.3,71.1,+0.2,,90.0,,,,28.7,28.9,-0.2,
+ GenView,MoCo v2,73.2,73.5,-0.3,,90.0,89.9,+0.1,,26.8,26.5,+0.3,
+ GenView,SimSiam,,72.0,,eval/simsiam_r50_genview/linear/imagenet1k.json,,,,\
metric 'top1' in eval/simsiam_r50_genview/cached/cifar10.json,,,,
"""


@pytest.fixture
def cells(monkeypatch):
    # Relative paths keep the golden output independent of where the checkout lives.
    monkeypatch.chdir(FIXTURES)
    return load_cells(SPEC, "eval")


def test_cells_carry_value_paper_difference_and_source(cells):
    baseline_in1k = cells[0][0]
    assert baseline_in1k.value == 71.26
    assert baseline_in1k.paper == 71.1
    assert baseline_in1k.difference == pytest.approx(0.16)
    assert baseline_in1k.missing is None
    assert baseline_in1k.source == "eval/baseline_r50/linear/imagenet1k.json"


def test_missing_file_metric_and_absent_cell_are_told_apart(cells):
    missing_file, missing_metric, not_in_row = cells[2]
    assert missing_file.value is None and missing_file.paper == 72.0 and missing_file.difference is None
    assert missing_file.missing == "eval/simsiam_r50_genview/linear/imagenet1k.json"
    assert missing_metric.missing == "metric 'top1' in eval/simsiam_r50_genview/cached/cifar10.json"
    assert not_in_row.missing is None and not_in_row.source is None


def test_mark_best_respects_direction_and_marks_ties(cells):
    best = [[cell.best for cell in row] for row in mark_best(cells, SPEC)]
    assert best == [[False, True, False], [True, True, True], [False, False, False]]


def test_mark_best_marks_nothing_without_best_mode(cells):
    spec = {**SPEC, "best": None}
    assert not any(cell.best for row in mark_best(cells, spec) for cell in row)
    assert "**" not in render_markdown(spec, cells)


def test_markdown_golden(cells):
    assert render_markdown(SPEC, cells) == EXPECTED_MARKDOWN


def test_latex_golden(cells):
    assert render_latex(SPEC, cells) == EXPECTED_LATEX


def test_csv_golden(cells):
    assert render_csv(SPEC, cells) == EXPECTED_CSV


def test_render_table_writes_the_four_formats(monkeypatch, tmp_path):
    monkeypatch.chdir(FIXTURES)
    paths = render_table(SPEC, "eval", tmp_path / "tables" / "linear")
    assert {suffix: path.name for suffix, path in paths.items()} == {
        "md": "linear.md",
        "tex": "linear.tex",
        "csv": "linear.csv",
        "html": "linear.html",
    }
    assert paths["md"].read_text() == EXPECTED_MARKDOWN
    assert paths["tex"].read_text() == EXPECTED_LATEX
    assert paths["csv"].read_text() == EXPECTED_CSV
    html = paths["html"].read_text()
    assert "<td class='n'><b>73.2</b> (paper 73.5, -0.3)</td>" in html
    assert "<li>eval/simsiam_r50_genview/linear/imagenet1k.json</li>" in html
    # No temporary files are left beside the outputs.
    written = sorted(path.name for path in (tmp_path / "tables").iterdir())
    assert written == ["linear.csv", "linear.html", "linear.md", "linear.tex"]


COMPACT = {
    "title": "Zero-shot",
    "cell": {"protocol": "knn", "metric": "top1"},
    "columns": [
        {"key": "c10", "label": "CIFAR-10", "cell": {"dataset": "cifar10"}},
        {"key": "in1k", "label": "ImageNet", "cell": {"dataset": "imagenet1k", "protocol": "linear"}},
        {"key": "avg", "label": "Average", "mean_of": "all"},
    ],
    "rows": [
        {"label": "base", "cell": {"experiment": "baseline_r50"}, "paper": {"c10": 89.0, "avg": 80.0}},
        {"label": "ours", "cell": {"experiment": "genview_r50"}, "paper": {"avg": 81.0}},
        {"label": "simsiam", "cell": {"experiment": "simsiam_r50_genview"}, "cells": {"in1k": None}},
    ],
    "gains": [
        {"row": "ours", "over": "base", "column": "avg", "paper": 1.5},
        {"row": "simsiam", "over": "base", "column": "c10"},
    ],
}


def test_compact_spec_expands_defaults_table_column_row_cell():
    expanded = expand_spec(COMPACT)
    base, ours, simsiam = (row["cells"] for row in expanded["rows"])
    assert base["c10"] == {
        "protocol": "knn",
        "metric": "top1",
        "dataset": "cifar10",
        "experiment": "baseline_r50",
        "paper": 89.0,
    }
    assert ours["in1k"] == {
        "protocol": "linear",
        "metric": "top1",
        "dataset": "imagenet1k",
        "experiment": "genview_r50",
    }
    assert "in1k" not in simsiam and "avg" not in base  # not applicable; computed
    assert cell_sources(expanded)[:2] == [("baseline_r50", "knn", "cifar10"), ("baseline_r50", "linear", "imagenet1k")]


def test_mean_column_and_gains(monkeypatch):
    monkeypatch.chdir(FIXTURES)
    spec = expand_spec(COMPACT)
    cells = load_cells(spec, "eval")
    base, ours, simsiam = cells
    # The mean is over the cells the row has, and waits for a missing one by name.
    assert base[2].value == pytest.approx((base[0].value + base[1].value) / 2) and base[2].paper == 80.0
    assert simsiam[2].missing == "row 'simsiam': the mean waits for c10"
    gains = gain_lines(spec, cells)
    expected = round(round(ours[2].value, 1) - round(base[2].value, 1), 1)
    assert gains[0] == f"ours over base, Average: {expected:+.1f}; paper +1.5"
    assert gains[1] == "simsiam over base, CIFAR-10: not yet reproduced (a result is missing)"
    markdown = render_markdown(spec, cells)
    assert (
        "- ours over base, Average:" in markdown and "1. metric 'top1' in eval/simsiam_r50_genview/cached" in markdown
    )


def test_mean_of_unknown_column_and_gain_of_unknown_row_are_config_errors():
    bad_mean = {**COMPACT, "columns": COMPACT["columns"][:2] + [{"key": "avg", "label": "A", "mean_of": ["x"]}]}
    with pytest.raises(ConfigError, match=r"column 'avg': mean_of names unknown columns \['x'\]"):
        validate_spec(expand_spec(bad_mean))
    with pytest.raises(ConfigError, match="row 'nobody' must name exactly one row"):
        validate_spec(expand_spec({**COMPACT, "gains": [{"row": "nobody", "over": "base", "column": "c10"}]}))


def test_unreadable_result_file_raises(tmp_path):
    broken = tmp_path / "baseline_r50" / "linear" / "imagenet1k.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    with pytest.raises(BadInputError, match="imagenet1k.json"):
        load_cells(SPEC, tmp_path)


def test_cell_naming_an_unknown_column_is_a_config_error():
    spec = {**SPEC, "rows": [{"label": "x", "cells": {"top5": _cell("a", "linear", "imagenet1k", "top5")}}]}
    with pytest.raises(ConfigError, match="no such column"):
        load_cells(spec, FIXTURES / "eval")


# Two-sided 95 % t quantiles t(0.975, df) from a printed t table, independent of the implementation's SciPy call.
T_975 = {2: 4.302653, 4: 2.776445}


def plain_paired_interval(values, reference):
    """The mean paired difference and its 95 % interval, by hand: d_s = values_s - reference_s,
    mean(d) -+ t(0.975, n - 1) * sd(d) / sqrt(n)."""
    import numpy as np

    d = np.array(values) - np.array(reference)
    half = T_975[len(d) - 1] * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


@pytest.mark.parametrize(
    "values, reference",
    [
        # Seeds move both runs together: the paired interval is narrow where an unpaired one spans zero.
        ([52.0, 61.0, 47.0], [50.0, 58.0, 46.0]),
        ([30.0, 42.5, 38.0, 51.0, 44.0], [33.0, 41.0, 40.5, 49.0, 46.5]),
    ],
)
def test_paired_difference_against_a_plain_recomputation(values, reference):
    from genview.report.tables import paired_difference

    mean, low, high = plain_paired_interval(values, reference)
    paired = paired_difference(values, reference)
    assert (paired.mean, paired.low, paired.high) == pytest.approx((mean, low, high), abs=1e-4)
    assert paired.seeds == len(values)


def test_paired_decision_follows_the_expected_direction():
    from genview.report.tables import PairedDifference, paired_decision

    above, below, spanning = (
        PairedDifference(3, 1, 5, 3),
        PairedDifference(-3, -5, -1, 3),
        PairedDifference(1, -1, 3, 3),
    )
    assert [paired_decision(d, "higher") for d in (above, below, spanning)] == ["yes", "no", "undecided"]
    assert [paired_decision(d, "lower") for d in (above, below, spanning)] == ["no", "yes", "undecided"]


def write_seeded_results(root, values):
    for name, runs in values.items():
        for seed, value in enumerate(runs):
            path = root / (name if len(runs) == 1 else f"{name}_s{seed}") / "cached" / "d.json"  # knn: shared file
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"knn": {"metrics": {"top1": value}}}))


def seeded_spec(expects: dict[str, str | None]) -> dict:
    """A seeded table of one row: column ``base`` (the reference) then one column per key of ``expects``, each an
    experiment ``<key>_s{seed}`` (``pixels``: one run) with its expected direction."""
    columns = [{"key": "base", "label": "base", "cell": {"experiment": "base_s{seed}"}}]
    for key, expect in expects.items():
        experiment = key if key == "pixels" else f"{key}_s{{seed}}"
        columns.append({"key": key, "label": key, "cell": {"experiment": experiment}, "expect": expect})
    return {
        "title": "T",
        "seeds": [0, 1, 2],
        "compare_to": "base",
        "cell": {"protocol": "knn", "dataset": "d", "metric": "top1"},
        "columns": columns,
        "rows": [{"label": "r"}],
    }


def test_seeded_cells_show_the_paired_difference_its_interval_and_decision(tmp_path):
    values = {"base": [50.0, 52.0, 54.0], "views": [60.0, 61.0, 62.0], "noise": [51.0, 55.0, 53.5], "pixels": [30.0]}
    write_seeded_results(tmp_path, values)
    spec = seeded_spec({"views": "higher", "noise": "higher", "pixels": "lower"})
    spec = expand_spec(spec)
    assert cell_sources(spec) == [(f"{k}_s{s}", "knn", "d") for k in ("base", "views", "noise") for s in range(3)] + [
        ("pixels", "knn", "d")
    ]
    base, views, noise, pixels = load_cells(spec, tmp_path)[0]
    assert base.value == 52.0 and base.spread == 2.0 and base.runs == (50.0, 52.0, 54.0) and base.compared is None
    for cell, runs, decision in ((views, values["views"], "yes"), (noise, values["noise"], "undecided")):
        mean, low, high = plain_paired_interval(runs, values["base"])
        assert (cell.compared, *cell.interval) == pytest.approx((mean, low, high), abs=1e-6)
        assert cell.decision == decision
    # A run without a {seed} field is one run, the same for every seed: its difference varies with the reference only.
    assert pixels.value == 30.0 and pixels.spread is None and pixels.runs is None
    assert (pixels.compared, *pixels.interval) == pytest.approx(plain_paired_interval([30.0] * 3, values["base"]))
    assert pixels.decision == "yes"
    cells = load_cells(spec, tmp_path)
    markdown = render_markdown(spec, cells)
    assert "| r | 52.0 ± 2.0 | 61.0 ± 1.0 (+9.0 [+6.5, +11.5] yes) | 53.2 ± 2.0 (+1.2 [-3.2, +5.5] undecided) |" in (
        markdown
    )
    assert "Mean ± standard deviation over 3 seeds" in markdown and "95 % t-interval" in markdown
    assert "*" not in markdown
    csv_lines = render_csv(spec, cells).splitlines()
    assert "views_vs_base,views_vs_base_low,views_vs_base_high,views_vs_base_decision" in csv_lines[0]
    assert "61.0,,,,1.0,+9.0,+6.5,+11.5,yes" in csv_lines[1]
    assert r"61.0 $\pm$ 1.0 {\scriptsize (+9.0 [+6.5, +11.5] yes)}" in render_latex(spec, cells)


def test_a_seeded_mean_column_pairs_by_seed(tmp_path):
    values = {"a": [50.0, 60.0, 70.0], "b": [52.0, 58.0, 73.0]}
    write_seeded_results(tmp_path, values)
    spec = {
        "title": "T",
        "seeds": [0, 1, 2],
        "compare_to": "a",
        "cell": {"protocol": "knn", "dataset": "d", "metric": "top1"},
        "columns": [
            {"key": "a", "label": "a", "cell": {"experiment": "a_s{seed}"}},
            {"key": "b", "label": "b", "cell": {"experiment": "b_s{seed}"}},
            {"key": "mean", "label": "mean", "mean_of": ["a", "b"]},
        ],
        "rows": [{"label": "r"}],
    }
    _, _, mean = load_cells(expand_spec(spec), tmp_path)[0]
    assert mean.runs == (51.0, 59.0, 71.5)
    assert (mean.compared, *mean.interval) == pytest.approx(plain_paired_interval(mean.runs, values["a"]))


def test_expect_needs_a_reference_column():
    spec = {"title": "T", "columns": [{"key": "a", "label": "a", "expect": "higher"}], "rows": [{"label": "r"}]}
    with pytest.raises(ConfigError, match="'expect' states a direction against the compare_to column"):
        validate_spec(spec)
    with pytest.raises(ConfigError, match="'expect' states a direction"):
        validate_spec({**spec, "compare_to": "a"})


def test_a_seeded_best_mark_needs_a_paired_lead_above_zero():
    from genview.report.tables import Cell

    spec = {
        "title": "T",
        "best": "column",
        "columns": [{"key": "a", "label": "a"}],
        "rows": [{"label": "x"}, {"label": "y"}, {"label": "z"}],
    }

    def seeded(*runs):
        return [Cell(value=sum(runs) / len(runs), spread=1.0, runs=runs)]

    # x leads y by 4, 5, 6 points per seed: a clear paired lead, although the seeds' spread is large.
    clear = mark_best([seeded(60.0, 70.0, 80.0), seeded(56.0, 65.0, 74.0), seeded(40.0, 41.0, 42.0)], spec)
    assert [row[0].best for row in clear] == [True, False, False]
    # x leads y by +10, -8, +10: its paired interval contains zero.
    close = mark_best([seeded(70.0, 62.0, 80.0), seeded(60.0, 70.0, 70.0), seeded(40.0, 41.0, 42.0)], spec)
    assert not any(row[0].best for row in close)


def test_claims_list_each_expected_direction_with_its_verdict_and_the_seeds_a_narrow_interval_takes(tmp_path):
    from scipy import stats

    from genview.report.claims import seeds_needed, write_claims

    values = {"base": [50.0, 52.0, 54.0], "views": [60.0, 61.0, 62.0], "noise": [51.0, 55.0, 53.5], "pixels": [30.0]}
    write_seeded_results(tmp_path / "eval", values)
    spec = seeded_spec({"views": "lower", "noise": "higher", "pixels": "lower"})
    views, noise, pixels = write_claims({"t": spec}, tmp_path / "eval", tmp_path / "claims")
    assert (views.verdict, noise.verdict) == ("not reproduced", "undecided")  # views is higher: the claim fails
    # A one-run column pairs as the same value for every seed: 30 - (50, 52, 54).
    assert (pixels.mean, pixels.verdict, pixels.sd) == (-22.0, "reproduced", pytest.approx(2.0))
    differences = [1.0, 3.0, -0.5]  # noise - base per seed
    assert noise.sd == pytest.approx(stats.tstd(differences))
    # The least n whose interval half-width t(0.975, n - 1) sd / sqrt(n) is at most 2, found plainly.
    half = [stats.t.ppf(0.975, n - 1) * noise.sd / n**0.5 for n in range(2, 50)]
    assert noise.seeds_for_half_width == next(n for n, h in zip(range(2, 50), half) if h <= 2.0)
    assert seeds_needed(0.0, 2.0) == 2 and seeds_needed(1e6, 2.0, limit=10) is None
    text = (tmp_path / "claims.md").read_text()
    assert "3 claims: 1 reproduced, 1 not reproduced, 1 undecided." in text
    assert "| t | r | noise higher than base | +1.2 [-3.2, +5.5] (3 seeds) | undecided |" in text
    assert "<td>not reproduced</td>" in (tmp_path / "claims.html").read_text()
