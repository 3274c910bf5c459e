"""Checks against ground truth that the synthetic `shapes` data makes possible (the embedded default).

The shapes generator knows every image's mask and class, and the shapes renderer records what each view kept, so the
mechanisms of the method can be measured instead of assumed:

- **foreground**: IoU of the foreground analysis's token masks with the ground-truth masks, for the trained encoder
  and for a randomly initialised encoder of the same architecture, on the same fitting sample;
- **views**: the share of views that keep the source image's class, per noise level (IC, ITC), per guidance scale
  and per caption complexity (TC, ITC);
- **quality**: how well GenView's pair-quality score q = cos(fg) − cos(bg) tells class-changed views from faithful
  ones (ROC AUC over (real, view) pairs);
- **learning**: for each row of a learning table (random initialisation, supervised, baseline, + views, + GenView),
  the share of the random -> supervised gap the baseline closes, and + views and + GenView against the baseline as
  paired differences over seeds with their 95 % intervals.

Every goal is one :func:`goal` record (name, value, threshold, passed, detail), listed under ``goals`` in the JSON.
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

GOALS = {"foreground_iou": 0.5, "ic_class_kept_at_noise_0": 0.95, "quality_auc": 0.8}
#: The share of the random -> supervised gap a self-supervised baseline must close.
GAP_CLOSED_GOAL = 0.5


def goal(
    name: str, value: float | None, threshold: float, *, higher: bool = True, strict: bool = False, detail=None
) -> dict:
    """A goal as the checks report it: passed when ``value`` >= ``threshold`` (``higher``) or <= it, strictly
    (> or <) when ``strict``; ``passed`` is None when the value could not be measured (None), and ``detail`` says
    why or what the value is."""
    if value is None:
        passed = None
    elif higher:
        passed = value > threshold if strict else value >= threshold
    else:
        passed = value < threshold if strict else value <= threshold
    return {"goal": name, "value": value, "threshold": threshold, "passed": passed, "detail": detail}


def goals_markdown(goals: list[dict]) -> list[str]:
    """Goals as Markdown table lines: goal, value, threshold, pass."""
    lines = ["| goal | value | threshold | pass |", "|---|---:|---:|---|"]
    for entry in goals:
        value = "—" if entry["value"] is None else f"{entry['value']:.3g}"
        passed = {True: "yes", False: "**no**", None: "not measured"}[entry["passed"]]
        detail = f" ({entry['detail']})" if entry["detail"] else ""
        lines.append(f"| {entry['goal']}{detail} | {value} | {entry['threshold']:g} | {passed} |")
    return lines


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
    """Per row of a learning table, for the roles of ``columns`` (random, supervised, baseline, views, genview:
    column keys): each role's mean and sd; ``gap_closed`` = (baseline - random) / (supervised - random);
    ``learned``: the baseline beats the random initialisation (paired 95 % interval above zero, with seeds); views
    and genview minus the baseline as paired differences with their 95 % intervals; and the row's goals: gap_closed
    >= GAP_CLOSED_GOAL, each paired difference's interval above zero."""
    from genview.report.tables import load_cells, paired_cells

    keys = [column["key"] for column in table_spec["columns"]]
    rows = []
    for row, cells in zip(table_spec["rows"], load_cells(table_spec, results_root)):
        by_key = dict(zip(keys, cells))
        present = {
            role: by_key[key] for role, key in columns.items() if key in by_key and by_key[key].value is not None
        }
        entry: dict = {"row": row["label"]}
        for role in columns:
            cell = present.get(role)
            entry[role] = (
                None
                if cell is None
                else {"mean": round(cell.value, 2), "sd": None if cell.spread is None else round(cell.spread, 2)}
            )
        label = row["label"]
        entry["goals"] = []
        if "random" in present and "baseline" in present:
            paired = paired_cells(present["baseline"], present["random"])
            # A baseline that does not beat its random initialisation learned nothing measurable: the row's
            # differences between variants are then noise, whatever their size.
            entry["learned"] = paired.low > 0 if paired else present["baseline"].value > present["random"].value
        gap_roles = ("random", "supervised", "baseline")
        if set(gap_roles) <= present.keys():
            gap = present["supervised"].value - present["random"].value
            entry["gap_closed"] = (
                None if gap <= 0 else round((present["baseline"].value - present["random"].value) / gap, 3)
            )
            entry["goals"].append(
                goal(
                    f"{label}: share of the random → supervised gap the baseline closes",
                    entry["gap_closed"],
                    GAP_CLOSED_GOAL,
                    detail=None if gap > 0 else "the supervised reference does not beat the random initialisation",
                )
            )
        elif set(gap_roles) <= columns.keys():
            entry["goals"].append(
                goal(
                    f"{label}: share of the random → supervised gap the baseline closes",
                    None,
                    GAP_CLOSED_GOAL,
                    detail=_waiting(gap_roles, present),
                )
            )
        for role, shown in (("views", "+ views"), ("genview", "+ GenView")):
            name = f"{label}: {shown} − baseline, 95 % interval's lower end"
            if role not in present or "baseline" not in present:
                if role in columns and "baseline" in columns:
                    entry["goals"].append(
                        goal(name, None, 0.0, strict=True, detail=_waiting((role, "baseline"), present))
                    )
                continue
            paired = paired_cells(present[role], present["baseline"])
            if paired is None:
                entry[f"{role}_minus_baseline"] = {
                    "difference": round(present[role].value - present["baseline"].value, 2)
                }
                entry["goals"].append(goal(name, None, 0.0, strict=True, detail="one run: no interval"))
                continue
            entry[f"{role}_minus_baseline"] = {
                "difference": round(paired.mean, 2),
                "low": round(paired.low, 2),
                "high": round(paired.high, 2),
                "seeds": paired.seeds,
            }
            entry["goals"].append(
                goal(
                    name,
                    round(paired.low, 2),
                    0.0,
                    strict=True,
                    detail=f"{paired.mean:+.1f} [{paired.low:+.1f}, {paired.high:+.1f}] over {paired.seeds} seeds",
                )
            )
        rows.append(entry)
    return rows


def _waiting(roles, present: dict) -> str:
    return "no result yet for " + ", ".join(role for role in roles if role not in present)


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
        roles = [role for role in ("random", "supervised", "baseline") if any(row.get(role) for row in learning)]
        lines += [
            "## Learning",
            "",
            "| row | " + " | ".join(roles) + " | gap closed | + views − baseline | + GenView − baseline |",
            "|---|" + "---:|" * (len(roles) + 3),
        ]

        def shown(value):
            if not value:
                return "—"
            return f"{value['mean']:.1f}" + ("" if value["sd"] is None else f" ± {value['sd']:.1f}")

        def difference(value):
            if not value:
                return "—"
            if "low" not in value:
                return f"{value['difference']:+.1f} (one run)"
            return f"{value['difference']:+.1f} [{value['low']:+.1f}, {value['high']:+.1f}]"

        for row in learning:
            gap = row.get("gap_closed")
            lines.append(
                f"| {row['row']} | "
                + " | ".join(shown(row.get(role)) for role in roles)
                + f" | {'—' if gap is None else f'{gap:.2f}'} | {difference(row.get('views_minus_baseline'))} | "
                f"{difference(row.get('genview_minus_baseline'))} |"
            )
        lines += [
            "",
            "Gap closed: (baseline − random) / (supervised − random), the share of what the labels teach the same "
            "backbone in the same budget that the self-supervised baseline learns. Differences: the mean over seeds "
            "of the paired difference (both runs of a seed) with its 95 % t-interval; an interval containing zero "
            "decides nothing.",
            "",
            *goals_markdown([entry for row in learning for entry in row["goals"]]),
            "",
        ]
        for row in learning:
            if row.get("learned") is False:
                lines += [
                    f"**{row['row']} learned nothing measurable**: its baseline does not beat the random "
                    "initialisation (paired 95 % interval), so its + views and + GenView differences (here and in the "
                    "tables) are noise.",
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
