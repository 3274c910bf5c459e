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
import tempfile
from pathlib import Path

import pandas as pd

from genview.contracts import COMPLEXITY, FOREGROUND, MANIFEST, VIEWS
from genview.io import atomic_path

log = logging.getLogger(__name__)

#: The goals of the embedded default's checks on the data side: key -> (threshold, direction, what it measures).
#: The report shows each with its value and whether it passed; docs/method.md (section 6) and the tests use these
#: thresholds. The learning goals are per row of the learning table (learning_checks).
GOALS = {
    "foreground_iou": (0.5, ">=", "foreground IoU of the analysis's token masks on the images it analysed"),
    "foreground_iou_over_all_foreground": (
        0.15,
        ">=",
        "that IoU minus an all-foreground mask's (which needs no encoder)",
    ),
    "noise_level_agreement": (0.5, ">=", "share of images given the noise level their true mask implies"),
    "foreground_ratio_correlation": (0.7, ">=", "rank correlation of the estimated foreground ratio with the truth"),
    "judge_test_accuracy": (0.95, ">=", "the pixel judge's top-1 on the real test split (PNG and JPEG 75)"),
    "judge_agrees_with_records": (0.95, ">=", "share of views whose judged class is the renderer's record"),
    "quality_auc_within_strata": (
        0.65,
        ">=",
        "quality AUC, faithful vs class-changed views, within each source and noise level (or guidance)",
    ),
    "training_weight_ratio": (1.0, "<", "mean training weight of class-changed pairs over faithful ones"),
}
#: The share of the random -> supervised gap a self-supervised baseline must close.
GAP_CLOSED_GOAL = 0.5
#: CLIP's zero-shot top-1 must reach this multiple of chance.
ZEROSHOT_OVER_CHANCE_GOAL = 3.0


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
    direction = (">" if higher else "<") + ("" if strict else "=")
    value = None if value is None else round(float(value), 4)
    return {
        "goal": name,
        "value": value,
        "threshold": threshold,
        "direction": direction,
        "passed": passed,
        "detail": detail,
    }


def check_goal(key: str, value: float | None, detail=None) -> dict:
    """The goal ``key`` of :data:`GOALS` with its measured value."""
    threshold, direction, about = GOALS[key]
    return {"key": key} | goal(
        about, value, threshold, higher=direction.startswith(">"), strict=not direction.endswith("="), detail=detail
    )


def goals_markdown(goals: list[dict]) -> list[str]:
    """Goals as Markdown table lines: goal, value, threshold, pass."""
    lines = ["| goal | value | threshold | pass |", "|---|---:|---:|---|"]
    for entry in goals:
        value = "—" if entry["value"] is None else f"{entry['value']:.3g}"
        passed = {True: "yes", False: "**no**", None: "not measured"}[entry["passed"]]
        detail = f" ({entry['detail']})" if entry["detail"] else ""
        lines.append(f"| {entry['goal']}{detail} | {value} | {entry['direction']} {entry['threshold']:g} | {passed} |")
    return lines


# --- Foreground and noise levels ----------------------------------------------------------------------------------


def true_foreground_shares(manifest: pd.DataFrame) -> pd.Series:
    """Share of each image's pixels inside its ground-truth mask, by id."""
    import numpy as np
    from PIL import Image

    def share(path: str) -> float:
        with Image.open(path) as mask:
            return float((np.asarray(mask.convert("L")) > 127).mean())

    rows = manifest[manifest["mask"].astype(bool)]
    return pd.Series([share(path) for path in rows["mask"]], index=rows["id"].values, name="true_share")


def foreground_checks(foreground_csvs: list, manifest_csv, edges: list[float], levels: list[int]) -> dict:
    """On the images the workflow analysed (the shards' foreground parts): the token masks' IoU with the true masks
    beside an all-foreground mask's, and the noise level each image was given beside the level its true mask's
    share gives (agreement, within one level, rank correlation of the ratios, confusion table)."""
    from genview.analysis.foreground import noise_level_for

    parts = pd.concat([FOREGROUND.read(path) for path in foreground_csvs], ignore_index=True)
    manifest = MANIFEST.read(manifest_csv, need=("id", "mask"))
    truth = true_foreground_shares(manifest[manifest["id"].isin(parts["id"])])
    parts = parts[parts["id"].isin(truth.index)].reset_index(drop=True)
    true_share = parts["id"].map(truth)
    true_level = pd.Series(noise_level_for(true_share.to_numpy(), edges, levels), index=parts.index)
    given = parts["noise_level"].astype(int)
    step = min(b - a for a, b in zip(levels, levels[1:])) if len(levels) > 1 else 1
    confusion = pd.crosstab(true_level, given)
    return {
        "images": int(len(parts)),
        "iou": round(float(parts["mask_iou"].mean()), 4),
        # An all-foreground mask's IoU with a true mask is the mask's share of the image.
        "iou_all_foreground": round(float(true_share.mean()), 4),
        "level_agreement": round(float((given == true_level).mean()), 4),
        "level_within_one": round(float(((given - true_level).abs() <= step).mean()), 4),
        "ratio_correlation": round(float(parts["fg_ratio"].corr(true_share, method="spearman")), 4),
        "confusion": {str(t): {str(g): int(confusion.loc[t, g]) for g in confusion.columns} for t in confusion.index},
    }


def encoder_fit_iou(encoder_spec: dict, manifest_csv, *, per_class: int, sample_size: int, seed: int) -> float:
    """Mean IoU of the foreground fit with ``encoder_spec`` on the fitting sample (the analysis's own fit)."""
    from genview.analysis.foreground import fit_foreground

    with tempfile.TemporaryDirectory() as scratch:
        fit = fit_foreground(
            manifest_csv,
            encoder_spec,
            Path(scratch, "fit.npz"),
            Path(scratch, "overlay.png"),
            per_class=per_class,
            sample_size=sample_size,
            seed=seed,
        )
    return float(fit["mean_iou"])


def random_encoder_iou(encoder_spec: dict, manifest_csv, *, per_class: int, sample_size: int, seed: int) -> float:
    """The foreground fit's IoU with the same open_clip architecture at random initialisation."""
    from genview.models.open_clip_models import CONFIG_FILE, _write_tiny_clip

    folder = Path(encoder_spec["model"].removeprefix("local-dir:"))
    config = json.loads((folder / CONFIG_FILE).read_text())
    with tempfile.TemporaryDirectory() as scratch:
        model_cfg = config["model_cfg"]
        _write_tiny_clip(
            model_cfg["vision_cfg"], model_cfg["embed_dim"], config["preprocess_cfg"]["size"], seed + 1, Path(scratch)
        )
        return encoder_fit_iou(
            {"model": f"local-dir:{scratch}"}, manifest_csv, per_class=per_class, sample_size=sample_size, seed=seed
        )


# --- Views judged from their pixels -------------------------------------------------------------------------------


def _kept(frame: pd.DataFrame, by: str | list[str]) -> dict:
    groups = frame.groupby(by, sort=True)["judged_kept"]
    return {
        (str(key) if not isinstance(key, tuple) else " / ".join(map(str, key))): {
            "class_kept": round(float(group.mean()), 4),
            "views": int(len(group)),
        }
        for key, group in groups
    }


def judged_views(view_manifests: list, manifest_csv, judge) -> pd.DataFrame:
    """Every view with the class the judge sees in its pixels, its source image's class and true foreground share,
    and whether its caption names the class."""
    from genview.data.shapes import parse_caption

    views = pd.concat([VIEWS.read(path) for path in view_manifests], ignore_index=True)
    manifest = MANIFEST.read(manifest_csv, need=("id", "label", "caption", "mask"))
    views = views.merge(manifest[["id", "label", "caption"]], on="id", how="left")
    views["true_share"] = views["id"].map(true_foreground_shares(manifest[manifest["id"].isin(views["id"])]))
    views["class_named"] = views["caption"].map(lambda caption: "label" in parse_caption(caption))
    views["judged_label"] = judge.predict(list(views["view"]))
    views["judged_kept"] = views["judged_label"] == views["label"]
    return views


def view_checks(views: pd.DataFrame, complexity_csvs: list) -> dict:
    """Per source: how often the judge agrees with the renderer's record, and the share of views that keep their
    source's class as judged from the pixels, by noise level (IC, ITC; also by the source object's true share) and
    by guidance and caption complexity (TC, ITC; TC also among captions naming the class)."""
    complexity = pd.concat(
        [COMPLEXITY.read(path, need=("id", "complexity")) for path in complexity_csvs]
        or [pd.DataFrame({"id": [], "complexity": []})],
        ignore_index=True,
    )
    views = views.merge(complexity[["id", "complexity"]], on="id", how="left")
    has_record = views["view_label"].astype(str).str.len() > 0
    result = {}
    for source, frame in views.groupby("source", sort=True):
        recorded = frame[has_record.loc[frame.index]]
        entry = {
            "views": int(len(frame)),
            "judge_agrees_with_records": None
            if recorded.empty
            else round(float((recorded["judged_label"] == recorded["view_label"]).mean()), 4),
            "class_kept": round(float(frame["judged_kept"].mean()), 4),
        }
        if frame["noise_level"].notna().any():
            entry["by_noise_level"] = _kept(frame, "noise_level")
            share_bin = pd.cut(frame["true_share"], [0, 0.1, 0.2, 0.4, 1.0]).astype(str)
            entry["by_true_share_and_noise_level"] = _kept(
                frame.assign(share_bin=share_bin), ["share_bin", "noise_level"]
            )
        if source != "ic":
            entry["by_guidance_scale"] = _kept(frame, "guidance_scale")
            entry["by_complexity"] = _kept(frame.dropna(subset=["complexity"]), "complexity")
            named = frame["class_named"].astype(bool)
            entry["by_guidance_scale_class_named"] = _kept(frame[named], "guidance_scale")
            entry["class_kept_class_not_named"] = round(float(frame.loc[~named, "judged_kept"].mean()), 4)
        result[source] = entry
    return result


def train_judge(manifest_csv, *, epochs: int, seed: int):
    """The pixel judge trained on the real training split, with its accuracy on the real test split as it is (PNG)
    and as a JPEG of quality 75, the lowest the views are saved at."""
    from genview.report.pixel_judge import JPEG_QUALITIES, judge_accuracy, train_pixel_judge

    rows = MANIFEST.read(manifest_csv, need=("path", "label", "split"))
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    image_size = _image_side(train["path"].iloc[0])
    judge = train_pixel_judge(
        list(train["path"]), list(train["label"]), image_size=image_size, epochs=epochs, seed=seed
    )
    if not test.empty:
        paths, labels = list(test["path"]), list(test["label"])
        judge.test_accuracy = round(
            min(judge_accuracy(judge, paths, labels, q) for q in (None, min(JPEG_QUALITIES))), 4
        )
    return judge


def _image_side(path: str) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return max(image.size)


# --- Quality scores -----------------------------------------------------------------------------------------------


def quality_auc(pairs: pd.DataFrame) -> dict:
    """ROC AUC of the quality score for telling faithful views (class kept) from class-changed ones: overall, per
    source, and within each stratum of source x noise level (IC, ITC) or source x guidance (TC), where the
    generation setting is constant, so a score that only reads the setting scores 0.5; ``within_strata`` is their
    pair-weighted mean."""
    from sklearn.metrics import roc_auc_score

    def auc(frame: pd.DataFrame) -> float | None:
        faithful = ~frame["class_changed"].astype(bool)
        if faithful.all() or not faithful.any():
            return None
        return round(float(roc_auc_score(faithful, frame["quality"])), 4)

    faithful = ~pairs["class_changed"].astype(bool)
    result = {"pairs": int(len(pairs)), "class_changed": int((~faithful).sum()), "auc": auc(pairs)}
    result["by_source"] = {source: auc(group) for source, group in pairs.groupby("source", sort=True)}
    # The generation setting a pair's view was made with: its noise level (IC, ITC) or else its guidance (TC).
    stratum = [
        f"{source} noise {int(level)}" if pd.notna(level) else f"{source} guidance {guidance:g}"
        for source, level, guidance in zip(pairs["source"], pairs["noise_level"], pairs["guidance_scale"])
    ]
    strata, weighted, counted = {}, 0.0, 0
    for label, group in pairs.groupby(pd.Series(stratum, index=pairs.index), sort=True):
        value = auc(group)
        strata[label] = {"auc": value, "pairs": int(len(group)), "class_changed": int(group["class_changed"].sum())}
        if value is not None:
            weighted += value * len(group)
            counted += len(group)
    result["strata"] = strata
    result["within_strata"] = round(weighted / counted, 4) if counted else None
    if result["auc"] is None:
        result["note"] = "every pair has the same class status: no AUC"
    return result


def score_pairs_with_truth(view_manifests: list, views: pd.DataFrame, manifest_csv, scorer, sample: int, seed: int):
    """(real, view) pairs of every source (the quality audit's sample) with their quality score, generation setting,
    and whether the view's class changed as judged from its pixels (``views``: :func:`judged_views`)."""
    from genview.report.quality_audit import read_pairs, score_pairs

    pairs = read_pairs(view_manifests, manifest_csv, sample, seed)
    truth = views[["id", "source", "view", "noise_level", "guidance_scale", "judged_kept"]]
    pairs = pairs.merge(truth, on=["id", "source", "view"], how="left")
    pairs["class_changed"] = ~pairs.pop("judged_kept").astype(bool)
    pairs["quality"] = score_pairs(pairs, scorer)
    return pairs


def training_weight_checks(metrics_files: list) -> dict:
    """Mean quality weight the trainings gave to pairs whose generated view changed class against faithful ones
    (summed over the logged steps of every ``metrics.jsonl``; the trainer logs per step the weight sums and counts
    of the pairs whose generated view's record says changed or kept), overall and per training."""

    def ratio(sums: dict) -> dict:
        mean = {kind: (total / count if count else None) for kind, (total, count) in sums.items()}
        return {
            "pairs_changed": sums["changed"][1],
            "pairs_faithful": sums["faithful"][1],
            "mean_weight_changed": None if mean["changed"] is None else round(mean["changed"], 4),
            "mean_weight_faithful": None if mean["faithful"] is None else round(mean["faithful"], 4),
            "ratio": None
            if None in mean.values() or not mean["faithful"]
            else round(mean["changed"] / mean["faithful"], 4),
        }

    total = {"changed": [0.0, 0], "faithful": [0.0, 0]}
    by_training = {}
    for path in metrics_files:
        sums = {"changed": [0.0, 0], "faithful": [0.0, 0]}
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            for kind in sums:
                if f"weight_sum_{kind}" in record:
                    for target in (sums[kind], total[kind]):
                        target[0] += record[f"weight_sum_{kind}"]
                        target[1] += record[f"pairs_{kind}"]
        by_training[Path(path).parent.name] = ratio(sums)
    return {"trainings": len(metrics_files), **ratio(total), "by_training": by_training}


def zeroshot_checks(table_spec: dict, results_root, column: str, chance: float) -> list[dict]:
    """Per row of a seeded zero-shot table: the mean top-1 of ``column`` (e.g. the CLIP baseline) against
    ``chance`` (100 / classes), with the goal of reaching ZEROSHOT_OVER_CHANCE_GOAL times chance."""
    from genview.report.tables import load_cells

    keys = [c["key"] for c in table_spec["columns"]]
    rows = []
    for row, cells in zip(table_spec["rows"], load_cells(table_spec, results_root)):
        cell = dict(zip(keys, cells)).get(column)
        value = None if cell is None or cell.value is None else cell.value / chance
        name = f"{row['label']}: zero-shot top-1 over chance ({chance:.1f} %)"
        detail = None if value is None else f"{cell.value:.1f} %"
        rows.append(
            {"row": row["label"], "top1": None if value is None else round(cell.value, 2), "chance": round(chance, 2)}
            | {"goal": goal(name, value, ZEROSHOT_OVER_CHANCE_GOAL, detail=detail)}
        )
    return rows


def default_goals(checks: dict) -> list[dict]:
    """Every goal the checks measured, with its value and whether it passed."""
    goals = []
    fg = checks.get("foreground")
    if fg:
        goals += [
            check_goal("foreground_iou", fg["iou"]),
            check_goal("foreground_iou_over_all_foreground", fg["iou"] - fg["iou_all_foreground"]),
            check_goal("noise_level_agreement", fg["level_agreement"]),
            check_goal("foreground_ratio_correlation", fg["ratio_correlation"]),
        ]
    if checks.get("judge"):
        goals.append(check_goal("judge_test_accuracy", checks["judge"]["test_accuracy"]))
    views = checks.get("views", {})
    agreements = [
        (e["judge_agrees_with_records"], e["views"]) for e in views.values() if e["judge_agrees_with_records"]
    ]
    if agreements:
        share = sum(a * n for a, n in agreements) / sum(n for _, n in agreements)
        goals.append(check_goal("judge_agrees_with_records", share))
    if checks.get("quality"):
        goals.append(check_goal("quality_auc_within_strata", checks["quality"]["within_strata"]))
    if checks.get("training_weights"):
        goals.append(check_goal("training_weight_ratio", checks["training_weights"]["ratio"]))
    goals += [entry for row in checks.get("learning", []) for entry in row["goals"]]
    goals += [row["goal"] for row in checks.get("zeroshot", [])]
    return goals


def learning_checks(table_spec: dict, results_root, columns: dict) -> list[dict]:
    """Per row of a learning table, for the roles of ``columns`` (random, supervised, baseline, views, genview:
    column keys): each role's mean and sd; ``gap_closed`` = (baseline - random) / (supervised - random);
    ``learned``: the baseline beats the random initialisation (paired 95 % interval above zero, with seeds); views
    and genview minus the baseline as paired differences with their 95 % intervals; and the row's goals: gap_closed
    >= GAP_CLOSED_GOAL, each paired difference's interval above zero."""
    from genview.report.tables import load_cells

    keys = [column["key"] for column in table_spec["columns"]]
    rows = []
    for row, cells in zip(table_spec["rows"], load_cells(table_spec, results_root)):
        by_key = dict(zip(keys, cells))
        present = {
            role: by_key[key] for role, key in columns.items() if key in by_key and by_key[key].value is not None
        }
        rows.append(_learning_row(row["label"], present, columns))
    return rows


def _learning_row(label: str, present: dict, columns: dict) -> dict:
    """The checks of one row of :func:`learning_checks`; ``present``: role -> cell, for the roles with a result."""
    from genview.report.tables import paired_cells

    entry: dict = {"row": label}
    for role in columns:
        cell = present.get(role)
        entry[role] = (
            None
            if cell is None
            else {"mean": round(cell.value, 2), "sd": None if cell.spread is None else round(cell.spread, 2)}
        )
    entry["goals"] = []
    if "random" in present and "baseline" in present:
        paired = paired_cells(present["baseline"], present["random"])
        # A baseline that does not beat its random initialisation learned nothing measurable: the row's
        # differences between variants are then noise, whatever their size.
        entry["learned"] = paired.low > 0 if paired else present["baseline"].value > present["random"].value
    _add_gap_closed(entry, label, present, columns)
    for role, shown in (("views", "+ views"), ("genview", "+ GenView")):
        _add_difference_to_baseline(entry, label, role, shown, present, columns)
    return entry


def _add_gap_closed(entry: dict, label: str, present: dict, columns: dict) -> None:
    """``gap_closed`` and its goal into ``entry``: only the goal, unmeasured, while random, supervised or baseline
    has no result yet; nothing for a table without all three."""
    gap_roles = ("random", "supervised", "baseline")
    name = f"{label}: share of the random → supervised gap the baseline closes"
    if set(gap_roles) <= present.keys():
        gap = present["supervised"].value - present["random"].value
        entry["gap_closed"] = (
            None if gap <= 0 else round((present["baseline"].value - present["random"].value) / gap, 3)
        )
        detail = None if gap > 0 else "the supervised reference does not beat the random initialisation"
        entry["goals"].append(goal(name, entry["gap_closed"], GAP_CLOSED_GOAL, detail=detail))
    elif set(gap_roles) <= columns.keys():
        entry["goals"].append(goal(name, None, GAP_CLOSED_GOAL, detail=_waiting(gap_roles, present)))


def _add_difference_to_baseline(entry: dict, label: str, role: str, shown: str, present: dict, columns: dict) -> None:
    """``<role>_minus_baseline`` (the paired difference, with its interval over seeds) and its goal into ``entry``;
    only the goal, unmeasured, while the role or the baseline has no result yet."""
    from genview.report.tables import paired_cells

    name = f"{label}: {shown} − baseline, 95 % interval's lower end"
    if role not in present or "baseline" not in present:
        if role in columns and "baseline" in columns:
            entry["goals"].append(goal(name, None, 0.0, strict=True, detail=_waiting((role, "baseline"), present)))
        return
    paired = paired_cells(present[role], present["baseline"])
    if paired is None:
        entry[f"{role}_minus_baseline"] = {"difference": round(present[role].value - present["baseline"].value, 2)}
        entry["goals"].append(goal(name, None, 0.0, strict=True, detail="one run: no interval"))
        return
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


def _waiting(roles, present: dict) -> str:
    return "no result yet for " + ", ".join(role for role in roles if role not in present)


def _foreground_lines(fg: dict) -> list[str]:
    ious = fg.get("fit_sample_iou", {})
    lines = [
        "## Foreground analysis",
        "",
        f"On the {fg['images']} training images the workflow analysed, the token masks' mean IoU with the true masks "
        f"is **{fg['iou']:.3f}**; an all-foreground mask scores {fg['iou_all_foreground']:.3f}. On the fitting "
        "sample, with the same fit: "
        + ", ".join(f"{name.replace('_', ' ')} {value:.3f}" for name, value in ious.items())
        + " (the foreground encoder is trained on a separate shapes set with masks and labels; the encoder trained "
        "without them shows how much of the result that supervision carries).",
        "",
        f"Noise level given against the level the true mask's share implies: agreement {fg['level_agreement']:.3f}, "
        f"within one level {fg['level_within_one']:.3f}; rank correlation of the estimated foreground ratio with "
        f"the true share {fg['ratio_correlation']:.3f}.",
        "",
    ]
    given = sorted({g for row in fg["confusion"].values() for g in row}, key=float)
    lines += ["| true level \\ given | " + " | ".join(given) + " |", "|---|" + "---:|" * len(given)]
    for true, row in fg["confusion"].items():
        lines.append(f"| {true} | " + " | ".join(str(row.get(g, 0)) for g in given) + " |")
    return lines + [""]


def _view_lines(checks: dict) -> list[str]:
    judge = checks["judge"]
    lines = [
        "## Views, judged from their pixels",
        "",
        f"A conv net trained with labels on the real training split ({judge['epochs']} epochs) judges each view's "
        f"class from its file; its top-1 on the real test split (the lower of the images as they are and saved as "
        f"JPEG at quality 75) is {judge['test_accuracy']:.3f}. Agreement with the "
        "renderer's record shows that view files and manifest rows line up; the class-kept shares below are the "
        "judge's. The renderer's rules (docs/method.md, section 6) are the world's premises, not results.",
        "",
    ]
    for source, entry in checks["views"].items():
        agrees = entry["judge_agrees_with_records"]
        lines += [
            f"### {source.upper()}",
            "",
            f"{entry['views']} views; judge agrees with the records on "
            f"{'—' if agrees is None else f'{agrees:.3f}'}; class kept {entry['class_kept']:.3f}.",
            "",
        ]
        for table in (
            "by_noise_level",
            "by_true_share_and_noise_level",
            "by_guidance_scale",
            "by_complexity",
            "by_guidance_scale_class_named",
        ):
            if table in entry:
                header = table.removeprefix("by_").replace("_class_named", " (captions naming the class)")
                header = header.replace("_", " ")
                lines += [f"| {header} | class kept | views |", "|---|---:|---:|"]
                lines += [f"| {key} | {v['class_kept']:.3f} | {v['views']} |" for key, v in entry[table].items()]
                lines.append("")
        if "class_kept_class_not_named" in entry:
            lines += [
                f"Views whose caption names no shape: class kept {entry['class_kept_class_not_named']:.3f} (a TC view "
                "then takes any class, chance 1/12; an ITC view keeps its source image's unless noise changes it).",
                "",
            ]
    return lines


def _quality_lines(quality: dict, weights: dict | None) -> list[str]:
    auc = "none" if quality.get("auc") is None else f"{quality['auc']:.3f}"
    within = "none" if quality.get("within_strata") is None else f"**{quality['within_strata']:.3f}**"
    lines = [
        "## Quality score",
        "",
        f"ROC AUC of q = cos(fg) − cos(bg) for faithful against class-changed views (judged), over "
        f"{quality['pairs']} pairs, {quality['class_changed']} class-changed: {auc} overall, {within} within "
        "strata of constant source and noise level (or guidance), where the generation setting alone scores 0.5.",
        "",
        "| stratum | AUC | pairs | class-changed |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in quality["strata"].items():
        value = "—" if entry["auc"] is None else f"{entry['auc']:.3f}"
        lines.append(f"| {name} | {value} | {entry['pairs']} | {entry['class_changed']} |")
    lines.append("")
    if weights:
        ratio = "—" if weights["ratio"] is None else f"{weights['ratio']:.3f}"
        lines += [
            f"During training ({weights['trainings']} trainings with quality weights), pairs whose generated view "
            f"changed class got a mean weight of {weights['mean_weight_changed']} ({weights['pairs_changed']} pairs) "
            f"against {weights['mean_weight_faithful']} for faithful ones ({weights['pairs_faithful']} pairs): "
            f"ratio {ratio}. Per training (SimCLR: the pair's weight; CLIP: the view's image–text weight):",
            "",
            "| training | changed / faithful | pairs changed | pairs faithful |",
            "|---|---:|---:|---:|",
        ]
        for name, entry in weights.get("by_training", {}).items():
            value = "—" if entry["ratio"] is None else f"{entry['ratio']:.3f}"
            lines.append(f"| {name} | {value} | {entry['pairs_changed']} | {entry['pairs_faithful']} |")
        lines.append("")
    return lines


def render_checks_markdown(checks: dict) -> str:
    lines = ["# Checks against ground truth", "", checks["about"], ""]
    if checks.get("goals"):
        lines += ["## Goals", "", *goals_markdown(checks["goals"]), ""]
    if checks.get("foreground"):
        lines += _foreground_lines(checks["foreground"])
    if checks.get("views"):
        lines += _view_lines(checks)
    if checks.get("quality"):
        lines += _quality_lines(checks["quality"], checks.get("training_weights"))
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
            "decides nothing. The goals are at the top.",
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
