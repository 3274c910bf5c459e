"""Tables of reproduced results beside the paper's numbers.

A table spec (a dict, read from YAML) names, for every cell, the evaluation result file
``{results_root}/{experiment}/{protocol}/{dataset}.json`` and the metric in it. Cells are loaded
from those files only, so every number in a rendered table can be traced to its source; a result
that does not exist yet is shown as missing, naming the file or metric that would fill it.

Spec keys: ``title``; optional ``caption``; ``columns`` (``key``, ``label``, optional
``higher_is_better``, default true); ``rows`` (``label``, optional ``group``, ``cells`` keyed by
column key, each with ``experiment``, ``protocol``, ``dataset``, ``metric`` and optional ``paper``);
optional ``best`` (``"column"`` bolds the best reproduced value per column); optional ``digits``
(default 1); optional ``group_label`` / ``row_label`` for the two leading header cells.
A row may leave a column out; that cell is rendered empty (not applicable, not missing).
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
_BEST_MODES = ("column", None)


@dataclass(frozen=True)
class Cell:
    """One table cell: the reproduced value, the paper's value, and where the value comes from."""

    value: float | None = None
    paper: float | None = None
    missing: str | None = None  # what would fill the cell: a result file, or a metric in one
    source: str | None = None  # the result file; None for a cell the row does not have
    best: bool = False

    @property
    def difference(self) -> float | None:
        if self.value is None or self.paper is None:
            return None
        return self.value - self.paper


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
    for row in spec.get("rows") or []:
        for key, cell in row.get("cells", {}).items():
            where = f"table {spec['title']!r}, row {row.get('label')!r}, column {key!r}"
            if key not in keys:
                raise ConfigError(f"{where}: no such column (columns: {keys})")
            absent = [field for field in _CELL_FIELDS if not cell.get(field)]
            if absent:
                raise ConfigError(f"{where}: missing {', '.join(absent)}")


def load_cells(spec: dict, results_root: str | os.PathLike) -> list[list[Cell]]:
    """One row of cells per spec row, in column order, read from the result files."""
    validate_spec(spec)
    root = Path(results_root)
    return [
        [_load_cell(row.get("cells", {}).get(column["key"]), root) for column in spec["columns"]]
        for row in spec.get("rows") or []
    ]


def _load_cell(cell_spec: dict | None, results_root: Path) -> Cell:
    if cell_spec is None:
        return Cell()
    paper = None if cell_spec.get("paper") is None else float(cell_spec["paper"])
    path = results_root / cell_spec["experiment"] / cell_spec["protocol"] / f"{cell_spec['dataset']}.json"
    source = str(path)
    if not path.is_file():
        return Cell(paper=paper, missing=source, source=source)
    try:
        metrics = json.loads(path.read_text())["metrics"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        # A result file that exists but cannot be read is a broken run, not a result still to come.
        raise BadInputError(f"{source}: not an evaluation result ({error})") from error
    metric = cell_spec["metric"]
    if metric not in metrics:
        return Cell(paper=paper, missing=f"metric {metric!r} in {source}", source=source)
    return Cell(value=float(metrics[metric]), paper=paper, source=source)


def mark_best(cells: list[list[Cell]], spec: dict) -> list[list[Cell]]:
    """Return ``cells`` with the best reproduced value of every column marked (ties all marked).

    Values are compared as displayed (rounded to ``digits``), so two cells that read the same are
    either both bold or neither, as in the paper.
    """
    unmarked = [[dataclasses.replace(cell, best=False) for cell in row] for row in cells]
    if spec.get("best") != "column":
        return unmarked
    digits = spec.get("digits", 1)
    for index, column in enumerate(spec["columns"]):
        shown = [round(row[index].value, digits) for row in unmarked if row[index].value is not None]
        if not shown:
            continue
        target = max(shown) if column.get("higher_is_better", True) else min(shown)
        for row in unmarked:
            if row[index].value is not None and round(row[index].value, digits) == target:
                row[index] = dataclasses.replace(row[index], best=True)
    return unmarked


def _number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def _signed_difference(cell: Cell, digits: int) -> str:
    """The difference of the values as displayed, so that the three printed numbers agree."""
    difference = round(cell.value, digits) - round(cell.paper, digits)
    # Adding 0.0 turns a rounded -0.0 into 0.0, which prints as "+0.0" rather than "-0.0".
    return f"{round(difference, digits) + 0.0:+.{digits}f}"


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


def _markdown_cell(cell: Cell, digits: int) -> str:
    if cell.missing is not None:
        return f"— (missing: {cell.missing})"
    if cell.value is None:
        return ""
    text = _number(cell.value, digits)
    if cell.best:
        text = f"**{text}**"
    if cell.paper is not None:
        text += f" (paper {_number(cell.paper, digits)}, {_signed_difference(cell, digits)})"
    return text


def render_markdown(spec: dict, cells: list[list[Cell]]) -> str:
    """A GitHub table under the title as a heading, with the caption below it."""
    cells = mark_best(cells, spec)
    digits = spec.get("digits", 1)
    headers = _header_labels(spec)
    leading = len(headers) - len(spec["columns"])
    lines = [f"## {spec['title']}", ""]
    lines.append("| " + " | ".join(_markdown_escape(label) for label in headers) + " |")
    lines.append("|" + "---|" * leading + "---:|" * len(spec["columns"]))
    for row, row_cells in zip(spec.get("rows") or [], cells):
        texts = [row["label"]] if leading == 1 else [row.get("group", ""), row["label"]]
        texts = [_markdown_escape(text) for text in texts]
        texts += [_markdown_cell(cell, digits) for cell in row_cells]
        lines.append("| " + " | ".join(texts) + " |")
    if spec.get("caption"):
        lines += ["", spec["caption"]]
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(character, character) for character in text)


def _latex_cell(cell: Cell, digits: int) -> str:
    if cell.missing is not None:
        return "--"
    if cell.value is None:
        return ""
    text = _number(cell.value, digits)
    if cell.best:
        text = rf"\textbf{{{text}}}"
    if cell.paper is not None:
        text += rf" {{\scriptsize ({_number(cell.paper, digits)}, {_signed_difference(cell, digits)})}}"
    return text


def render_latex(spec: dict, cells: list[list[Cell]]) -> str:
    """A booktabs table; each missing cell is listed in a trailing comment, naming what fills it."""
    cells = mark_best(cells, spec)
    digits = spec.get("digits", 1)
    headers = _header_labels(spec)
    leading = len(headers) - len(spec["columns"])
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
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    lines += [f"% missing: {cell.missing}" for row in cells for cell in row if cell.missing is not None]
    return "\n".join(lines) + "\n"


def render_csv(spec: dict, cells: list[list[Cell]]) -> str:
    """One line per table row: label, group, then value, paper, difference and missing per column.

    Numbers are written at the table's ``digits``, as displayed; full precision is in the result files.
    """
    digits = spec.get("digits", 1)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["row", "group"]
    for column in spec["columns"]:
        key = column["key"]
        header += [key, f"{key}_paper", f"{key}_diff", f"{key}_missing"]
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
        writer.writerow(line)
    return buffer.getvalue()


def render_table(
    spec: dict, results_root: str | os.PathLike, out_prefix: str | os.PathLike
) -> dict[str, Path]:
    """Write ``out_prefix`` + ``.md``, ``.tex`` and ``.csv``, atomically; return their paths by suffix."""
    cells = load_cells(spec, results_root)
    renderers = {"md": render_markdown, "tex": render_latex, "csv": render_csv}
    paths = {}
    for suffix, render in renderers.items():
        path = Path(f"{out_prefix}.{suffix}")
        with atomic_path(path) as tmp:
            tmp.write_text(render(spec, cells))
        paths[suffix] = path
    return paths
