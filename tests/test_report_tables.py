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


def test_seeded_cells_are_mean_and_sd_and_differences_count_beyond_the_spread(tmp_path):
    from genview.report.tables import load_cells, render_markdown

    values = {"base": [50.0, 52.0, 54.0], "views": [60.0, 61.0, 62.0], "noise": [51.0, 55.0, 53.5]}
    for name, runs in values.items():
        for seed, value in enumerate(runs):
            path = tmp_path / f"{name}_s{seed}" / "cached" / "d.json"  # knn reads cached features: a shared file
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"knn": {"metrics": {"top1": value}}}))
    spec = {
        "title": "T",
        "seeds": [0, 1, 2],
        "compare_to": "base",
        "cell": {"protocol": "knn", "dataset": "d", "metric": "top1"},
        "columns": [{"key": k, "label": k, "cell": {"experiment": f"{k}_s{{seed}}"}} for k in values],
        "rows": [{"label": "r"}],
    }
    spec = expand_spec(spec)
    assert cell_sources(spec) == [(f"{k}_s{s}", "knn", "d") for k in values for s in range(3)]
    base, views, noise = load_cells(spec, tmp_path)[0]
    assert base.value == 52.0 and base.spread == 2.0 and base.compared is None
    assert views.value == 61.0 and views.spread == 1.0 and views.compared == 9.0 and views.significant
    assert noise.compared == pytest.approx(53.5 / 3 + 106 / 3 - 52) and not noise.significant  # within the spread
    markdown = render_markdown(spec, load_cells(spec, tmp_path))
    assert "| r | 52.0 ± 2.0 | 61.0 ± 1.0 (+9.0*) | 53.2 ± 2.0 (+1.2) |" in markdown
    assert "Mean ± standard deviation over 3 seeds" in markdown


def test_a_seeded_best_mark_needs_a_lead_beyond_the_spread():
    from genview.report.tables import Cell

    spec = {
        "title": "T",
        "best": "column",
        "columns": [{"key": "a", "label": "a"}],
        "rows": [{"label": "x"}, {"label": "y"}, {"label": "z"}],
    }
    clear = mark_best(
        [[Cell(value=70.0, spread=1.0)], [Cell(value=60.0, spread=1.0)], [Cell(value=61.0, spread=1.0)]], spec
    )
    assert [row[0].best for row in clear] == [True, False, False]
    close = mark_best(
        [[Cell(value=70.0, spread=5.0)], [Cell(value=66.0, spread=5.0)], [Cell(value=61.0, spread=1.0)]], spec
    )
    assert not any(row[0].best for row in close)
