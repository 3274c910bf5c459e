"""Checks against ground truth that the synthetic `shapes` data makes possible (the embedded default).

The shapes generator knows every image's mask and class, and the shapes renderer records what each view kept, so the
mechanisms of the method can be measured instead of assumed:

- **foreground**: IoU of the foreground analysis's token masks with the ground-truth masks, for the trained encoder
  and for a randomly initialised encoder of the same architecture, on the same fitting sample;
- **views**: the share of views that keep the source image's class, per noise level (IC, ITC), per guidance scale
  and per caption complexity (TC, ITC);
- **quality**: how well GenView's pair-quality score q = cos(fg) − cos(bg) tells class-changed views from faithful
  ones (ROC AUC over (real, view) pairs);
- **learning**: for each row of a seeded table (random initialisation / baseline / + views / + GenView), the ratio of
  the baseline to the random backbone and the differences with their spread.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

from genview.contracts import COMPLEXITY, MANIFEST, VIEWS
from genview.io import atomic_path

log = logging.getLogger(__name__)

GOALS = {"foreground_iou": 0.5, "ic_class_kept_at_noise_0": 0.95, "quality_auc": 0.8, "baseline_over_random": 3.0}


def _rate(frame: pd.DataFrame, by: str) -> dict:
    kept = 1 - frame["class_changed"].astype(float)
    return {
        str(key): {"class_kept": round(float(group.mean()), 4), "views": int(len(group))}
        for key, group in kept.groupby(frame[by], sort=True)
    }


def view_checks(
    view_manifests: list[str | os.PathLike], complexity_csvs: list[str | os.PathLike], manifest_csv=None
) -> dict:
    """Class kept per source, by noise level (IC, ITC), guidance scale and caption complexity (TC, ITC); with the
    dataset's manifest, TC and ITC also by guidance among the views whose caption names the class: a caption that
    names no shape lets a TC view take any class whatever the guidance (short captions, which get high guidance)."""
    views = pd.concat([VIEWS.read(path) for path in view_manifests], ignore_index=True)
    if views["class_changed"].isna().all():
        return {"note": "the generator keeps no ground truth (a diffusion model): no view checks"}
    complexity = pd.concat(
        [COMPLEXITY.read(path, need=("id", "complexity")) for path in complexity_csvs]
        or [pd.DataFrame({"id": [], "complexity": []})],
        ignore_index=True,
    )
    views = views.merge(complexity[["id", "complexity"]], on="id", how="left")
    if manifest_csv is not None:
        from genview.data.shapes import parse_caption

        captions = MANIFEST.read(manifest_csv, need=("id", "caption"))
        named = captions.caption.map(lambda caption: "label" in parse_caption(caption))
        views = views.merge(pd.DataFrame({"id": captions.id, "class_named": named}), on="id", how="left")
    result = {}
    for source, frame in views.groupby("source", sort=True):
        entry = {"views": int(len(frame)), "class_kept": round(float(1 - frame["class_changed"].mean()), 4)}
        if frame["noise_level"].notna().any():
            entry["by_noise_level"] = _rate(frame, "noise_level")
        if source != "ic":
            entry["by_guidance_scale"] = _rate(frame, "guidance_scale")
            entry["by_complexity"] = _rate(frame.dropna(subset=["complexity"]), "complexity")
            if "class_named" in frame:
                named = frame["class_named"].fillna(False).astype(bool)
                entry["by_guidance_scale_class_named"] = _rate(frame[named], "guidance_scale")
                entry["class_kept_class_not_named"] = round(float(1 - frame.loc[~named, "class_changed"].mean()), 4)
        result[source] = entry
    return result


def quality_auc(pairs: pd.DataFrame) -> dict:
    """ROC AUC of the quality score for telling faithful views (class kept) from class-changed ones."""
    from sklearn.metrics import roc_auc_score

    faithful = ~pairs["class_changed"].astype(bool)
    result = {"pairs": int(len(pairs)), "class_changed": int((~faithful).sum())}
    if faithful.all() or not faithful.any():
        return {**result, "auc": None, "note": "every pair has the same class status: no AUC"}
    result["auc"] = round(float(roc_auc_score(faithful, pairs["quality"])), 4)
    result["by_source"] = {}
    for source, group in pairs.groupby("source", sort=True):
        kept = ~group["class_changed"].astype(bool)
        if kept.any() and not kept.all():
            result["by_source"][source] = round(float(roc_auc_score(kept, group["quality"])), 4)
    return result


def score_pairs_with_truth(view_manifests, manifest_csv, scorer, sample: int, seed: int) -> pd.DataFrame:
    """(real, view) pairs of every source with their quality score and whether the view's class changed."""
    from genview.report.quality_audit import read_pairs, score_pairs

    pairs = read_pairs(view_manifests, manifest_csv, sample, seed)
    truth = pd.concat([VIEWS.read(path)[["id", "source", "view", "class_changed"]] for path in view_manifests])
    pairs = pairs.merge(truth, on=["id", "source", "view"], how="left")
    pairs["quality"] = score_pairs(pairs, scorer)
    return pairs


def random_encoder_iou(encoder_spec: dict, manifest_csv, *, per_class: int, sample_size: int, seed: int) -> float:
    """The foreground fit's IoU with the same open_clip architecture at random initialisation."""
    from genview.analysis.foreground import fit_foreground
    from genview.models.open_clip_models import CONFIG_FILE, _write_tiny_clip

    folder = Path(encoder_spec["model"].removeprefix("local-dir:"))
    config = json.loads((folder / CONFIG_FILE).read_text())
    with tempfile.TemporaryDirectory() as scratch:
        model_cfg = config["model_cfg"]
        _write_tiny_clip(
            model_cfg["vision_cfg"],
            model_cfg["embed_dim"],
            config["preprocess_cfg"]["size"],
            seed + 1,
            Path(scratch, "random"),
        )
        fit = fit_foreground(
            manifest_csv,
            {"model": f"local-dir:{scratch}/random"},
            Path(scratch, "fit.npz"),
            Path(scratch, "overlay.png"),
            per_class=per_class,
            sample_size=sample_size,
            seed=seed,
        )
    return float(fit["mean_iou"])


def learning_checks(table_spec: dict, results_root, columns: dict) -> list[dict]:
    """Per row of a seeded table: random / baseline / + views / + GenView values, the baseline's ratio to the
    random backbone, and each difference to the baseline with whether it exceeds the combined spread."""
    from genview.report.tables import load_cells

    keys = [column["key"] for column in table_spec["columns"]]
    rows = []
    for row, cells in zip(table_spec["rows"], load_cells(table_spec, results_root)):
        by_key = dict(zip(keys, cells))
        entry = {"row": row["label"]}
        for role, key in columns.items():
            cell = by_key.get(key)
            entry[role] = (
                None
                if cell is None or cell.value is None
                else {"mean": round(cell.value, 2), "sd": None if cell.spread is None else round(cell.spread, 2)}
            )
        baseline, random = entry.get("baseline"), entry.get("random")
        if baseline and random and random["mean"]:
            entry["baseline_over_random"] = round(baseline["mean"] / random["mean"], 2)
            # A baseline within the spread of its random initialisation learned nothing measurable: the row's
            # differences between variants are then noise, whatever their size.
            spread = ((baseline["sd"] or 0) ** 2 + (random["sd"] or 0) ** 2) ** 0.5
            entry["learned"] = baseline["mean"] - random["mean"] > spread
        for role in ("views", "genview"):
            cell, base = by_key.get(columns.get(role)), by_key.get(columns.get("baseline"))
            if cell is not None and base is not None and cell.value is not None and base.value is not None:
                spread = ((cell.spread or 0) ** 2 + (base.spread or 0) ** 2) ** 0.5
                entry[f"{role}_minus_baseline"] = {
                    "difference": round(cell.value - base.value, 2),
                    "spread": round(spread, 2),
                    "beyond_spread": abs(cell.value - base.value) > spread,
                }
        rows.append(entry)
    return rows


def render_checks_markdown(checks: dict) -> str:
    lines = ["# Checks against ground truth", "", checks["about"], ""]
    fg = checks.get("foreground")
    if fg:
        lines += [
            "## Foreground analysis",
            "",
            f"Mean IoU of the token masks with the ground-truth masks on the fitting sample: trained encoder "
            f"**{fg['iou_trained']:.3f}**, random encoder of the same architecture {fg['iou_random']:.3f} "
            f"(goal ≥ {GOALS['foreground_iou']}).",
            "",
        ]
    for source, entry in checks.get("views", {}).items():
        if source == "note":
            lines += [entry, ""]
            continue
        lines += [
            f"## {source.upper()} views",
            "",
            f"{entry['views']} views; class kept: {entry['class_kept']:.3f}.",
            "",
        ]
        for table in ("by_noise_level", "by_guidance_scale", "by_complexity", "by_guidance_scale_class_named"):
            if table in entry:
                header = table.removeprefix("by_").replace("_class_named", " (captions naming the class)")
                header = header.replace("_", " ")
                lines += [f"| {header} | class kept | views |", "|---|---:|---:|"]
                lines += [
                    f"| {key} | {value['class_kept']:.3f} | {value['views']} |" for key, value in entry[table].items()
                ]
                lines.append("")
        if "class_kept_class_not_named" in entry:
            lines += [
                f"Views whose caption names no shape (short captions, which get high guidance): class kept "
                f"{entry['class_kept_class_not_named']:.3f} (a TC view then takes any class, chance 1/12; an ITC "
                f"view keeps its source image's).",
                "",
            ]
    quality = checks.get("quality")
    if quality:
        auc = "none" if quality.get("auc") is None else f"**{quality['auc']:.3f}**"
        lines += [
            "## Quality score",
            "",
            f"ROC AUC of q = cos(fg) − cos(bg) for faithful vs class-changed views: "
            f"{auc} over {quality['pairs']} pairs, {quality['class_changed']} class-changed "
            f"(goal ≥ {GOALS['quality_auc']}); by source: {quality.get('by_source', {})}.",
            "",
        ]
    learning = checks.get("learning")
    if learning:
        lines += [
            "## Learning",
            "",
            "| row | random | baseline | baseline / random | + views − baseline | + GenView − baseline |",
            "|---|---:|---:|---:|---:|---:|",
        ]

        def shown(value):
            return (
                "—"
                if not value
                else f"{value['mean']:.1f} ± {value['sd']:.1f}"
                if value["sd"] is not None
                else f"{value['mean']:.1f}"
            )

        def difference(value):
            return (
                "—"
                if not value
                else (
                    f"{value['difference']:+.1f} (spread {value['spread']:.1f})"
                    + (" *" if value["beyond_spread"] else "")
                )
            )

        for row in learning:
            lines.append(
                f"| {row['row']} | {shown(row.get('random'))} | {shown(row.get('baseline'))} | "
                f"{row.get('baseline_over_random', '—')} | {difference(row.get('views_minus_baseline'))} | "
                f"{difference(row.get('genview_minus_baseline'))} |"
            )
        lines += ["", f"Goal: baseline ≥ {GOALS['baseline_over_random']}× random; * = beyond the seeds' spread.", ""]
        for row in learning:
            if row.get("learned") is False:
                lines += [
                    f"**{row['row']} learned nothing measurable**: its baseline is within the seeds' spread of the "
                    "random initialisation, so its + views and + GenView differences (here and in the tables) are "
                    "noise.",
                    "",
                ]
    return "\n".join(lines) + "\n"


def write_checks(checks: dict, out_json, out_md) -> None:
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(checks, indent=2) + "\n")
    markdown = render_checks_markdown(checks)
    with atomic_path(out_md) as tmp:
        tmp.write_text(markdown)
    log.info("%s", markdown)
