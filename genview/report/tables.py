"""Tables of reproduced results beside the paper's numbers.

A table spec (a dict, read from YAML) names, for every cell, the evaluation result file
``{results_root}/{experiment}/{protocol}/{dataset}.json`` and the metric in it. Cells are loaded
from those files only, so every number in a rendered table can be traced to its source; a result
that does not exist yet is shown as missing, naming the file or metric that would fill it.

Spec keys (``config/tables.schema.yaml`` documents them for the YAML files): ``title``; optional
``caption``; ``columns`` (``key``, ``label``, optional ``higher_is_better``, default true, optional
``mean_of``: the row's mean over other columns); ``rows`` (``label``, optional ``group``, ``cells``
keyed by column key, each with ``experiment``, ``protocol``, ``dataset``, ``metric`` and optional
``paper``); optional ``best`` (``"column"`` bolds the best reproduced value per column, ``"group"`` per column within
each group of rows); optional
``digits`` (default 1); optional ``group_label`` / ``row_label`` for the two leading header cells;
optional ``gains`` (a row's improvement over another row in one column, with the paper's claim); optional
``seeds`` (each cell's experiment names a ``{seed}`` field; the cell is the mean +- sd over the seeds; an experiment
without the field is one run, the same for every seed) and ``compare_to`` (a column key: other columns show their
difference to it; with seeds, the mean paired difference over seeds with its 95 % t-interval, and for a column with
``expect``, higher or lower, whether the interval confirms that direction: yes / no / undecided).
A row may leave a column out; that cell is rendered empty (not applicable, not missing).
:func:`expand_spec` turns the compact form of the YAML files (defaults per table, column and row)
into this one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from genview.errors import BadInputError, ConfigError
from genview.io import atomic_path

_CELL_FIELDS = ("experiment", "protocol", "dataset", "metric")
_BEST_MODES = ("column", "group", None)


@dataclass(frozen=True)
class Cell:
    """One table cell: the reproduced value, the paper's value, and where the value comes from."""

    value: float | None = None
    paper: float | None = None
    missing: str | None = None  # what would fill the cell: a result file, or a metric in one
    source: str | None = None  # the result file; None for a cell the row does not have
    best: bool = False
    spread: float | None = None  # standard deviation over seeds (tables with `seeds`)
    runs: tuple[float, ...] | None = None  # the value of each seed, in the table's seed order; None: one run
    compared: float | None = None  # (mean paired) difference to the compare_to column's cell of the row
    interval: tuple[float, float] | None = None  # 95 % t-interval of the mean paired difference (with seeds)
    decision: str | None = None  # yes / no / undecided: the interval against the column's `expect`

    @property
    def difference(self) -> float | None:
        if self.value is None or self.paper is None:
            return None
        return self.value - self.paper


@dataclass(frozen=True)
class PairedDifference:
    """The mean of d_s = value_s - reference_s over n seeds, with its t-interval."""

    mean: float
    low: float
    high: float
    seeds: int


def paired_difference(values, reference, confidence: float = 0.95) -> PairedDifference:
    """Mean paired difference of two runs per seed (same order) and its two-sided t-interval:
    mean(d) +- t((1 + confidence) / 2, n - 1) * sd(d) / sqrt(n), with d_s = values_s - reference_s."""
    import numpy as np
    from scipy import stats

    differences = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    if differences.ndim != 1 or len(differences) < 2 or len(values) != len(reference):
        raise ValueError(f"a paired difference needs two runs per seed of at least 2 seeds, got {values}, {reference}")
    mean = float(differences.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, len(differences) - 1) * differences.std(ddof=1))
    half /= len(differences) ** 0.5
    return PairedDifference(mean=mean, low=mean - half, high=mean + half, seeds=len(differences))


def paired_decision(difference: PairedDifference, expect: str) -> str:
    """yes: the interval lies entirely on the ``expect`` side of zero (higher: above); no: entirely on the other;
    undecided: it contains zero."""
    if difference.low <= 0 <= difference.high:
        return "undecided"
    return "yes" if (difference.low > 0) == (expect == "higher") else "no"


def _merged(*layers: dict | None) -> dict:
    merged: dict = {}
    for layer in layers:
        merged.update(layer or {})
    return merged


def expand_spec(spec: dict) -> dict:
    """Every cell spelled out: the table's ``cell``, the column's, the row's, then ``cells[key]``; ``paper``
    values from the row's ``paper`` mapping. Mean columns get no cell (they are computed)."""
    expanded = {key: value for key, value in spec.items() if key != "cell"}
    rows = []
    for row in spec["rows"]:
        overrides = row.get("cells", {})
        cells = {}
        for column in spec["columns"]:
            key = column["key"]
            if "mean_of" in column or (key in overrides and overrides[key] is None):
                continue
            cell = _merged(spec.get("cell"), column.get("cell"), row.get("cell"), overrides.get(key))
            if key in row.get("paper", {}):
                cell["paper"] = row["paper"][key]
            if any(field in cell for field in _CELL_FIELDS):
                cells[key] = cell
        rows.append(
            {
                **{k: v for k, v in row.items() if k not in ("cell", "cells", "paper")},
                "cells": cells,
                "paper": row.get("paper", {}),
            }
        )
    expanded["rows"] = rows
    return expanded


def mean_columns(spec: dict) -> dict[str, list[str]]:
    """Mean column key -> the keys it averages."""
    plain = [column["key"] for column in spec["columns"] if "mean_of" not in column]
    return {
        column["key"]: plain if column["mean_of"] == "all" else list(column["mean_of"])
        for column in spec["columns"]
        if "mean_of" in column
    }


def validate_spec(spec: dict) -> None:
    """Raise :class:`ConfigError` naming the first problem in ``spec``."""
    if not isinstance(spec.get("title"), str):
        raise ConfigError("table spec: 'title' must be a string")
    columns = spec.get("columns") or []
    keys = [column.get("key") for column in columns]
    if not keys or len(set(keys)) != len(keys):
        raise ConfigError(f"table {spec['title']!r}: 'columns' must have unique keys, got {keys}")
    if spec.get("best") not in _BEST_MODES:
        raise ConfigError(f"table {spec['title']!r}: 'best' must be one of {_BEST_MODES}")
    for column in columns:
        if column.get("expect") and (not spec.get("compare_to") or column["key"] == spec["compare_to"]):
            raise ConfigError(
                f"table {spec['title']!r}, column {column['key']!r}: 'expect' states a direction against the "
                f"compare_to column, so the table needs compare_to naming another column"
            )
    for row in spec.get("rows") or []:
        for key, cell in row.get("cells", {}).items():
            where = f"table {spec['title']!r}, row {row.get('label')!r}, column {key!r}"
            if key not in keys:
                raise ConfigError(f"{where}: no such column (columns: {keys})")
            absent = [field for field in _CELL_FIELDS if not cell.get(field)]
            if absent:
                raise ConfigError(f"{where}: missing {', '.join(absent)}")
    plain = [column["key"] for column in columns if "mean_of" not in column]
    for key, averaged in mean_columns(spec).items():
        unknown = sorted(set(averaged) - set(plain))
        if unknown:
            raise ConfigError(f"table {spec['title']!r}, column {key!r}: mean_of names unknown columns {unknown}")
    for gain in spec.get("gains") or []:
        for name in (gain["row"], gain["over"]):
            if len(_rows_named(spec, name)) != 1:
                raise ConfigError(
                    f"table {spec['title']!r}, gains: row {name!r} must name exactly one row (as label or group/label)"
                )
        if gain["column"] not in keys:
            raise ConfigError(f"table {spec['title']!r}, gains: no column {gain['column']!r} (columns: {keys})")


def _rows_named(spec: dict, name: str) -> list[int]:
    """Rows whose label, or group/label, is ``name``."""
    return [
        index
        for index, row in enumerate(spec.get("rows") or [])
        if name in (row.get("label"), f"{row.get('group')}/{row.get('label')}")
    ]


def _seeded(spec: dict, cell: dict) -> bool:
    """Whether the cell is one run per seed (a seeded table, an experiment naming ``{seed}``)."""
    return bool(spec.get("seeds")) and "{seed}" in cell["experiment"]


def _experiments(spec: dict, cell: dict) -> list[str]:
    """The experiment of a cell, or one per seed."""
    return (
        [cell["experiment"].format(seed=seed) for seed in spec["seeds"]]
        if _seeded(spec, cell)
        else [cell["experiment"]]
    )


def cell_sources(spec: dict) -> list[tuple[str, str, str]]:
    """The (experiment, protocol, dataset) of every cell (every seed's), in table order, without repeats."""
    seen = {}
    for row in spec.get("rows") or []:
        for cell in row.get("cells", {}).values():
            for experiment in _experiments(spec, cell):
                seen.setdefault((experiment, cell["protocol"], cell["dataset"]), None)
    return list(seen)


def load_cells(spec: dict, results_root: str | os.PathLike) -> list[list[Cell]]:
    """One row of cells per spec row, in column order, read from the result files."""
    validate_spec(spec)
    root = Path(results_root)
    means = mean_columns(spec)
    keys = [column["key"] for column in spec["columns"]]
    expect = {column["key"]: column.get("expect") for column in spec["columns"]}
    reference = spec.get("compare_to")
    table = []
    for row in spec.get("rows") or []:
        cells = {key: _load_seeds(spec, row.get("cells", {}).get(key), root) for key in keys if key not in means}
        for key, averaged in means.items():
            cells[key] = _mean_cell({k: cells[k] for k in averaged}, row.get("paper", {}).get(key), row["label"])
        if reference in cells:
            cells = {
                key: _compared(cell, cells[reference], expect[key]) if key != reference else cell
                for key, cell in cells.items()
            }
        table.append([cells[key] for key in keys])
    return table


def _load_seeds(spec: dict, cell_spec: dict | None, root: Path) -> Cell:
    """A cell of one run, or the mean and standard deviation over the table's seeds."""
    if cell_spec is None or not _seeded(spec, cell_spec):
        return _load_cell(cell_spec, root)
    runs = [_load_cell({**cell_spec, "experiment": name}, root) for name in _experiments(spec, cell_spec)]
    waiting = [run for run in runs if run.value is None]
    if waiting:
        return waiting[0]
    values = [run.value for run in runs]
    mean = sum(values) / len(values)
    spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return dataclasses.replace(
        runs[0],
        value=mean,
        spread=spread,
        runs=tuple(values),
        source=f"mean of {len(runs)} seeds: {', '.join(run.source for run in runs)}",
    )


def paired_cells(cell: Cell, other: Cell) -> PairedDifference | None:
    """``cell`` - ``other`` paired by seed (both loaded by :func:`load_cells`), a one-run cell counting as the same
    value for every seed; None when neither has runs per seed."""
    if cell.runs is None and other.runs is None:
        return None
    seeds = len(cell.runs or other.runs)
    return paired_difference(cell.runs or (cell.value,) * seeds, other.runs or (other.value,) * seeds)


def _compared(cell: Cell, reference: Cell, expect: str | None) -> Cell:
    if cell.value is None or reference.value is None:
        return cell
    paired = paired_cells(cell, reference)
    if paired is None:
        return dataclasses.replace(cell, compared=cell.value - reference.value)
    return dataclasses.replace(
        cell,
        compared=paired.mean,
        interval=(paired.low, paired.high),
        decision=paired_decision(paired, expect) if expect else None,
    )


def _mean_cell(cells: dict[str, Cell], paper: float | None, row_label: str) -> Cell:
    present = {key: cell for key, cell in cells.items() if cell.source is not None}
    if not present:
        return Cell()
    missing = [key for key, cell in present.items() if cell.value is None]
    if missing:
        return Cell(paper=paper, missing=f"row {row_label!r}: the mean waits for {', '.join(missing)}")
    value = sum(cell.value for cell in present.values()) / len(present)
    seeded = [cell.runs for cell in present.values() if cell.runs is not None]
    if not seeded:
        return Cell(value=value, paper=paper, source="mean")
    # Per seed, the mean of the columns (a one-run column counts for every seed), so it pairs like any other cell.
    runs = tuple(
        sum(cell.runs[s] if cell.runs is not None else cell.value for cell in present.values()) / len(present)
        for s in range(len(seeded[0]))
    )
    spread = (sum((v - value) ** 2 for v in runs) / (len(runs) - 1)) ** 0.5
    return Cell(value=value, paper=paper, source="mean", runs=runs, spread=spread)


def _load_cell(cell_spec: dict | None, results_root: Path) -> Cell:
    if cell_spec is None:
        return Cell()
    from genview.evaluation.runs import read_result, result_file

    paper = None if cell_spec.get("paper") is None else float(cell_spec["paper"])
    where = (cell_spec["experiment"], cell_spec["protocol"], cell_spec["dataset"])
    source = result_file(*where, root=str(results_root))
    try:
        record = read_result(*where, root=str(results_root))
        if record is None:
            return Cell(paper=paper, missing=source, source=source)
        metrics = record["metrics"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        # A result file that exists but cannot be read is a broken run, not a result still to come.
        raise BadInputError(f"{source}: not an evaluation result ({error})") from error
    metric = cell_spec["metric"]
    if metric not in metrics:
        return Cell(paper=paper, missing=f"metric {metric!r} in {source}", source=source)
    return Cell(value=float(metrics[metric]), paper=paper, source=source)


def mark_best(cells: list[list[Cell]], spec: dict) -> list[list[Cell]]:
    """Return ``cells`` with the best reproduced value of every column marked (ties all marked), over the whole
    table (``best: column``) or within each group of rows (``best: group``).

    Values are compared as displayed (rounded to ``digits``), so two cells that read the same are
    either both bold or neither, as in the paper.
    """
    unmarked = [[dataclasses.replace(cell, best=False) for cell in row] for row in cells]
    mode = spec.get("best")
    if mode is None:
        return unmarked
    digits = spec.get("digits", 1)
    rows = spec.get("rows") or []
    groups: dict = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.get("group") if mode == "group" else None, []).append(index)
    for members in groups.values():
        for index, column in enumerate(spec["columns"]):
            shown = [round(unmarked[r][index].value, digits) for r in members if unmarked[r][index].value is not None]
            if not shown:
                continue
            higher = column.get("higher_is_better", True)
            target = max(shown) if higher else min(shown)
            for r in members:
                cell = unmarked[r][index]
                if (
                    cell.value is not None
                    and round(cell.value, digits) == target
                    and _clearly_best(cell, [unmarked[o][index] for o in members if o != r], higher)
                ):
                    unmarked[r][index] = dataclasses.replace(cell, best=True)
    return unmarked


def _clearly_best(cell: Cell, others: list[Cell], higher: bool) -> bool:
    """Without seeds every top value counts; with seeds, only a lead over every other cell whose paired 95 %
    interval lies above zero (a bold mark that rests on seed noise would mislead)."""
    for other in others:
        if other.value is None:
            continue
        paired = paired_cells(cell, other)
        if paired is not None and (paired.low <= 0 if higher else paired.high >= 0):
            return False
    return True


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _signed(value: float, digits: int) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0, which prints as "+0.0" rather than "-0.0".
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def _signed_difference(cell: Cell, digits: int) -> str:
    """The difference of the values as displayed, so that the three printed numbers agree."""
    return _signed(round(cell.value, digits) - round(cell.paper, digits), digits)


def gain_lines(spec: dict, cells: list[list[Cell]]) -> list[str]:
    """One sentence per declared gain: reproduced improvement (as displayed) and the paper's."""
    digits = spec.get("digits", 1)
    keys = [column["key"] for column in spec["columns"]]
    lines = []
    for gain in spec.get("gains") or []:
        column = keys.index(gain["column"])
        better = cells[_rows_named(spec, gain["row"])[0]][column]
        base = cells[_rows_named(spec, gain["over"])[0]][column]
        label = spec["columns"][column]["label"]
        if better.value is None or base.value is None:
            reproduced = "not yet reproduced (a result is missing)"
        else:
            reproduced = _signed(round(better.value, digits) - round(base.value, digits), digits)
        claim = "" if gain.get("paper") is None else f"; paper {gain['paper']:+g}"
        lines.append(f"{gain['row']} over {gain['over']}, {label}: {reproduced}{claim}")
    return lines


def seeds_note(spec: dict) -> str:
    """How to read a table with seeds or a reference column."""
    parts = []
    if spec.get("seeds"):
        parts.append(
            f"Mean ± standard deviation over {len(spec['seeds'])} seeds ({', '.join(map(str, spec['seeds']))}); "
            "a value without ± is one run, the same for every seed."
        )
        if spec.get("best"):
            parts.append("A value is bold only when its paired lead over every other has a 95 % interval above zero.")
    if spec.get("compare_to"):
        label = next(c["label"] for c in spec["columns"] if c["key"] == spec["compare_to"])
        if spec.get("seeds"):
            parts.append(
                f"(+x [lo, hi]) is the mean over seeds of the paired difference to {label} (the cell's run of a seed "
                f"minus {label}'s run of the same seed) with its 95 % t-interval; yes / no: the interval lies "
                "entirely on the side the paper claims (the column's expected direction) / on the other side; "
                "undecided: it contains zero."
            )
        else:
            parts.append(f"(+x) is the difference to {label}.")
    return " ".join(parts)


def _header_labels(spec: dict) -> list[str]:
    """Leading header cells: the group column appears only when some row has a group."""
    leading = [spec.get("row_label", "")]
    if _has_groups(spec):
        leading.insert(0, spec.get("group_label", "Group"))
    return leading + [column["label"] for column in spec["columns"]]


def _has_groups(spec: dict) -> bool:
    return any(row.get("group") for row in spec.get("rows") or [])


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")


def missing_notes(cells: list[list[Cell]]) -> list[str]:
    """What each missing cell waits for, once each, in table order; cells refer to them by number."""
    return list(dict.fromkeys(cell.missing for row in cells for cell in row if cell.missing is not None))


def _text_cell(cell: Cell, digits: int, notes: list[str], bold) -> str:
    """A cell as text (Markdown and HTML): value, best in ``bold``, paper value and difference; or a note number."""
    if cell.missing is not None:
        return f"— [{notes.index(cell.missing) + 1}]"
    if cell.value is None:
        return ""
    text = _number(cell.value, digits)
    if cell.spread is not None:
        text += f" ± {_number(cell.spread, digits)}"
    if cell.best:
        text = bold(text)
    if cell.compared is not None:
        text += f" ({_comparison(cell, digits)})"
    if cell.paper is not None:
        text += f" (paper {_number(cell.paper, digits)}, {_signed_difference(cell, digits)})"
    return text


def _comparison(cell: Cell, digits: int) -> str:
    """The difference to the reference column, its interval and the decision, e.g. "+7.0 [-2.1, +16.1] undecided"."""
    text = _signed(cell.compared, digits)
    if cell.interval is not None:
        text += f" [{_signed(cell.interval[0], digits)}, {_signed(cell.interval[1], digits)}]"
    if cell.decision is not None:
        text += f" {cell.decision}"
    return text


def _layout(spec: dict, cells: list[list[Cell]]):
    """What every renderer starts from: cells with the best marked, missing notes, digits, header labels and the
    number of leading (label) columns."""
    headers = _header_labels(spec)
    marked = mark_best(cells, spec)
    return marked, missing_notes(marked), spec.get("digits", 1), headers, len(headers) - len(spec["columns"])


def render_markdown(spec: dict, cells: list[list[Cell]]) -> str:
    """A GitHub table under the title as a heading, with the caption below it."""
    cells, notes, digits, headers, leading = _layout(spec, cells)
    lines = [f"## {spec['title']}", ""]
    lines.append("| " + " | ".join(_markdown_escape(label) for label in headers) + " |")
    lines.append("|" + "---|" * leading + "---:|" * len(spec["columns"]))
    for row, row_cells in zip(spec.get("rows") or [], cells):
        texts = [row["label"]] if leading == 1 else [row.get("group", ""), row["label"]]
        texts = [_markdown_escape(text) for text in texts]
        texts += [_text_cell(cell, digits, notes, lambda text: f"**{text}**") for cell in row_cells]
        lines.append("| " + " | ".join(texts) + " |")
    if spec.get("caption"):
        lines += ["", spec["caption"]]
    if seeds_note(spec):
        lines += ["", seeds_note(spec)]
    gains = gain_lines(spec, cells)
    if gains:
        lines += ["", "Gains (reproduced; paper):", ""] + [f"- {_markdown_escape(line)}" for line in gains]
    if notes:
        lines += ["", "Missing results (— [n] in the table):", ""]
        lines += [f"{number}. {note}" for number, note in enumerate(notes, start=1)]
    return "\n".join(lines) + "\n"


def render_html(spec: dict, cells: list[list[Cell]]) -> str:
    """A standalone HTML page with the Markdown table's content (for Snakemake's HTML report)."""
    from html import escape

    cells, notes, digits, headers, leading = _layout(spec, cells)
    lines = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{escape(spec['title'])}</title>",
        "<style>body{font-family:sans-serif;font-size:14px}table{border-collapse:collapse}"
        "th,td{padding:3px 9px;border-bottom:1px solid #ccc}td.n{text-align:right}</style></head><body>",
        f"<h3>{escape(spec['title'])}</h3>",
        "<table><thead><tr>" + "".join(f"<th>{escape(label)}</th>" for label in headers) + "</tr></thead><tbody>",
    ]
    for row, row_cells in zip(spec.get("rows") or [], cells):
        texts = [row["label"]] if leading == 1 else [row.get("group", ""), row["label"]]
        values = [escape(_text_cell(cell, digits, notes, lambda text: f"\0{text}\1")) for cell in row_cells]
        values = [value.replace("\0", "<b>").replace("\1", "</b>") for value in values]
        lines.append(
            "<tr>"
            + "".join(f"<td>{escape(text)}</td>" for text in texts)
            + "".join(f"<td class='n'>{value}</td>" for value in values)
            + "</tr>"
        )
    lines.append("</tbody></table>")
    if spec.get("caption"):
        lines.append(f"<p>{escape(spec['caption'])}</p>")
    if seeds_note(spec):
        lines.append(f"<p>{escape(seeds_note(spec))}</p>")
    gains = gain_lines(spec, cells)
    if gains:
        lines.append(
            "<p>Gains (reproduced; paper):</p><ul>" + "".join(f"<li>{escape(g)}</li>" for g in gains) + "</ul>"
        )
    if notes:
        lines.append(
            "<p>Missing results (— [n] in the table):</p><ol>"
            + "".join(f"<li>{escape(note)}</li>" for note in notes)
            + "</ol>"
        )
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(character, character) for character in text)


def _latex_cell(cell: Cell, digits: int) -> str:
    if cell.missing is not None:
        return "--"
    if cell.value is None:
        return ""
    text = _number(cell.value, digits)
    if cell.spread is not None:
        text += rf" $\pm$ {_number(cell.spread, digits)}"
    if cell.best:
        text = rf"\textbf{{{text}}}"
    if cell.compared is not None:
        text += rf" {{\scriptsize ({_comparison(cell, digits)})}}"
    if cell.paper is not None:
        text += rf" {{\scriptsize ({_number(cell.paper, digits)}, {_signed_difference(cell, digits)})}}"
    return text


def render_latex(spec: dict, cells: list[list[Cell]]) -> str:
    """A booktabs table; each missing cell is listed in a trailing comment, naming what fills it."""
    cells, notes, digits, headers, leading = _layout(spec, cells)
    caption = latex_escape(spec["title"])
    if spec.get("caption"):
        caption += ". " + latex_escape(spec["caption"])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{caption}}}",
        rf"\begin{{tabular}}{{{'l' * leading}{'r' * len(spec['columns'])}}}",
        r"\toprule",
        " & ".join(latex_escape(label) for label in headers) + r" \\",
        r"\midrule",
    ]
    previous_group = None
    for row, row_cells in zip(spec.get("rows") or [], cells):
        texts = [latex_escape(row["label"])]
        if leading == 2:
            group = row.get("group", "")
            # As in the paper, a group's name is printed once, on the first of its consecutive rows.
            texts.insert(0, latex_escape(group) if group != previous_group else "")
            previous_group = group
        texts += [_latex_cell(cell, digits) for cell in row_cells]
        lines.append(" & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {latex_escape(line)}" for line in gain_lines(spec, cells)]
    if seeds_note(spec):
        lines += [rf"\par\footnotesize {latex_escape(seeds_note(spec))}"]
    lines += [r"\end{table}"]
    lines += [f"% missing: {note}" for note in notes]
    return "\n".join(lines) + "\n"


def render_csv(spec: dict, cells: list[list[Cell]]) -> str:
    """One line per table row: label, group, then value, paper, difference and missing per column.

    Numbers are written at the table's ``digits``, as displayed; full precision is in the result files.
    """
    digits = spec.get("digits", 1)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    versus = f"vs_{spec.get('compare_to')}"
    extra = ["sd"] * bool(spec.get("seeds")) + [versus] * bool(spec.get("compare_to"))
    extra += [f"{versus}_low", f"{versus}_high", f"{versus}_decision"] * bool(
        spec.get("seeds") and spec.get("compare_to")
    )
    header = ["row", "group"]
    for column in spec["columns"]:
        key = column["key"]
        header += [key, f"{key}_paper", f"{key}_diff", f"{key}_missing", *(f"{key}_{e}" for e in extra)]
    writer.writerow(header)
    for row, row_cells in zip(spec.get("rows") or [], cells):
        line = [row["label"], row.get("group", "")]
        for cell in row_cells:
            line += [
                "" if cell.value is None else _number(cell.value, digits),
                "" if cell.paper is None else _number(cell.paper, digits),
                "" if cell.difference is None else _signed_difference(cell, digits),
                cell.missing or "",
            ]
            if spec.get("seeds"):
                line.append("" if cell.spread is None else _number(cell.spread, digits))
            if spec.get("compare_to"):
                line.append("" if cell.compared is None else _signed(cell.compared, digits))
            if spec.get("seeds") and spec.get("compare_to"):
                bounds = [_signed(bound, digits) for bound in cell.interval] if cell.interval else ["", ""]
                line += [*bounds, cell.decision or ""]
        writer.writerow(line)
    return buffer.getvalue()


def render_table(spec: dict, results_root: str | os.PathLike, out_prefix: str | os.PathLike) -> dict[str, Path]:
    """Write ``out_prefix`` + ``.md``, ``.tex``, ``.csv`` and ``.html``, atomically; return their paths by suffix."""
    cells = load_cells(spec, results_root)
    renderers = {"md": render_markdown, "tex": render_latex, "csv": render_csv, "html": render_html}
    paths = {}
    for suffix, render in renderers.items():
        path = Path(f"{out_prefix}.{suffix}")
        with atomic_path(path) as tmp:
            tmp.write_text(render(spec, cells))
        paths[suffix] = path
    return paths
