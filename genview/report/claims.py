"""The paper's claims, one line each: every table cell whose column states a direction (`expect`) against the table's
reference column (`compare_to`), over seeds, with the paired difference, its 95 % interval, the verdict and how many
seeds an interval of a chosen half-width would take at the spread observed.

Verdicts: reproduced (the interval lies on the claimed side of zero), not reproduced (on the other side), undecided
(it contains zero). The seed count is n such that t(0.975, n - 1) * sd(d) / sqrt(n) <= the half-width, with sd(d)
the standard deviation of the per-seed differences: an estimate from few seeds, itself uncertain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from genview.io import atomic_path
from genview.report.tables import expand_spec, load_cells

VERDICTS = {"yes": "reproduced", "no": "not reproduced", "undecided": "undecided"}


@dataclass(frozen=True)
class Claim:
    table: str
    row: str
    column: str
    reference: str
    expect: str
    seeds: int
    mean: float
    low: float
    high: float
    verdict: str
    sd: float  # of the per-seed differences
    seeds_for_half_width: int | None  # None: more than the search limit


def seeds_needed(sd: float, half_width: float, limit: int = 10_000) -> int | None:
    """The least n >= 2 with t(0.975, n - 1) * sd / sqrt(n) <= half_width."""
    from scipy import stats

    for n in range(2, limit + 1):
        if stats.t.ppf(0.975, n - 1) * sd / n**0.5 <= half_width:
            return n
    return None


def table_claims(name: str, spec: dict, results_root: str | os.PathLike, half_width: float) -> list[Claim]:
    """The claims of one table whose cells are all present (a table still waiting for results has none yet)."""
    spec = expand_spec(spec)
    if not (spec.get("seeds") and spec.get("compare_to")):
        return []
    labels = {column["key"]: column["label"] for column in spec["columns"]}
    claims = []
    for row, cells in zip(spec["rows"], load_cells(spec, results_root)):
        by_key = dict(zip(labels, cells))
        reference = by_key[spec["compare_to"]]
        for column in spec["columns"]:
            cell = by_key[column["key"]]
            if not column.get("expect") or cell.interval is None:
                continue
            # A one-run cell (no {seed} field) counts as the same value for every seed, as the tables pair it.
            seeds = len(cell.runs or reference.runs)
            runs, reference_runs = (c.runs or (c.value,) * seeds for c in (cell, reference))
            differences = [a - b for a, b in zip(runs, reference_runs)]
            mean = sum(differences) / len(differences)
            sd = (sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)) ** 0.5
            claims.append(
                Claim(
                    table=name,
                    row=row["label"],
                    column=column["label"],
                    reference=labels[spec["compare_to"]],
                    expect=column["expect"],
                    seeds=len(differences),
                    mean=cell.compared,
                    low=cell.interval[0],
                    high=cell.interval[1],
                    verdict=VERDICTS[cell.decision],
                    sd=sd,
                    seeds_for_half_width=seeds_needed(sd, half_width),
                )
            )
    return claims


def _rows(claims: list[Claim]) -> list[list[str]]:
    return [
        [
            c.table,
            c.row,
            f"{c.column} {c.expect} than {c.reference}",
            f"{c.mean:+.1f} [{c.low:+.1f}, {c.high:+.1f}] ({c.seeds} seeds)",
            c.verdict,
            f"{c.sd:.1f}",
            "more than 10,000" if c.seeds_for_half_width is None else str(c.seeds_for_half_width),
        ]
        for c in claims
    ]


def _summary(claims: list[Claim], half_width: float) -> list[str]:
    counts = ", ".join(f"{sum(c.verdict == v for c in claims)} {v}" for v in VERDICTS.values())
    return [
        f"{len(claims)} claims: {counts}.",
        "Each is a paired difference over seeds (the same initialisation and batches per seed) with its 95 % "
        f"t-interval; undecided: the interval contains zero. Seeds for ±{half_width:g}: how many seeds would narrow "
        f"the interval to ±{half_width:g} at the spread of the per-seed differences observed here (an estimate from "
        "few seeds).",
    ]


def _header(half_width: float) -> list[str]:
    return [
        "table",
        "row",
        "claim",
        "difference [95 % interval]",
        "verdict",
        "sd of differences",
        f"seeds for ±{half_width:g}",
    ]


def render_markdown(claims: list[Claim], half_width: float) -> str:
    lines = ["# The paper's claims in these tables", "", *_summary(claims, half_width), ""]
    lines += ["| " + " | ".join(_header(half_width)) + " |", "|---|---|---|---|---|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(claims)]
    return "\n".join(lines) + "\n"


def render_html(claims: list[Claim], half_width: float) -> str:
    from html import escape

    def line(cells, tag):
        return "<tr>" + "".join(f"<{tag}>{escape(cell)}</{tag}>" for cell in cells) + "</tr>"

    parts = ["<h1>The paper's claims in these tables</h1>"]
    parts += [f"<p>{escape(paragraph)}</p>" for paragraph in _summary(claims, half_width)]
    parts += ["<table>", line(_header(half_width), "th"), *(line(row, "td") for row in _rows(claims)), "</table>"]
    return "\n".join(parts) + "\n"


def write_claims(
    specs: dict[str, dict], results_root: str | os.PathLike, out_prefix: str | os.PathLike, half_width: float = 2.0
) -> list[Claim]:
    """Write ``out_prefix``.md and .html: every claim of every table of ``specs``."""
    claims = [claim for name, spec in specs.items() for claim in table_claims(name, spec, results_root, half_width)]
    for suffix, render in (("md", render_markdown), ("html", render_html)):
        with atomic_path(Path(f"{out_prefix}.{suffix}")) as tmp:
            Path(tmp).write_text(render(claims, half_width))
    return claims
