"""The ground-truth checks (genview.report.checks) against plain recomputations on hand-made view manifests."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from helpers import indexed_shapes
from PIL import Image

from genview.contracts import COMPLEXITY, FOREGROUND, MANIFEST, VIEWS
from genview.report.checks import (
    check_goal,
    default_goals,
    foreground_checks,
    quality_auc,
    render_checks_markdown,
    training_weight_checks,
    view_checks,
)

CAPTIONS = {"a": "a large red circle on a plain blue background", "b": "a large shape", "c": "a small green star"}


@pytest.fixture
def files(tmp_path):
    rows = [
        # id, source, noise, guidance, changed
        ("a", "ic", 0, 8.0, False),
        ("b", "ic", 0, 8.0, False),
        ("c", "ic", 400, 8.0, True),
        ("a", "tc", None, 2.0, True),
        ("b", "tc", None, 8.0, True),
        ("c", "tc", None, 2.0, False),
        ("a", "tc", None, 2.0, False),
    ]
    views = pd.DataFrame(
        [
            {"id": i, "view": f"{s}_{n}.jpg", "source": s, "sample": 0, "noise_level": noise, "guidance_scale": g}
            | {"seed": n, "stamp": "x", "view_label": "", "class_changed": changed, "kept_attributes": ""}
            for n, (i, s, noise, g, changed) in enumerate(rows)
        ]
    )
    paths = []
    for source, frame in views.groupby("source"):
        VIEWS.write(frame, tmp_path / f"{source}.csv")
        paths.append(tmp_path / f"{source}.csv")
    COMPLEXITY.write(
        pd.DataFrame(
            {"id": ["a", "b", "c"], "complexity": [4, 1, 3], "guidance_scale": [2.0, 8.0, 4.0]}
            | {"complexity_source": "lexical", "llm_attempts": 0}
        ),
        tmp_path / "complexity.csv",
    )
    MANIFEST.write(
        pd.DataFrame({"id": list(CAPTIONS), "caption": list(CAPTIONS.values())}).assign(
            path="", label="", split="", mask=""
        ),
        tmp_path / "manifest.csv",
    )
    return views, paths, tmp_path


def _judged(paths) -> pd.DataFrame:
    """The frame judged_views builds, with a judge that sees exactly the recorded class (kept = not changed)."""
    views = pd.concat([VIEWS.read(path) for path in paths], ignore_index=True)
    return views.assign(
        label="circle",
        view_label=np.where(views.class_changed, "star", "circle"),
        judged_label=np.where(views.class_changed, "star", "circle"),
        judged_kept=~views.class_changed.astype(bool),
        true_share=0.3,
        class_named=views["id"].map({"a": True, "b": False, "c": True}),
    )


def test_class_kept_per_source_and_level_is_the_share_of_unchanged_views(files):
    views, paths, root = files
    checks = view_checks(_judged(paths), [root / "complexity.csv"])
    for source, frame in views.groupby("source"):
        assert checks[source]["class_kept"] == pytest.approx(1 - frame.class_changed.mean(), abs=1e-4)
        assert checks[source]["judge_agrees_with_records"] == 1.0
    assert checks["ic"]["by_noise_level"] == {
        "0": {"class_kept": 1.0, "views": 2},
        "400": {"class_kept": 0.0, "views": 1},
    }
    assert checks["tc"]["by_guidance_scale"]["2.0"] == {"class_kept": round(2 / 3, 4), "views": 3}
    assert checks["tc"]["by_complexity"]["4"] == {"class_kept": 0.5, "views": 2}
    # Captions of a and c name their shape, b's does not ("a large shape").
    assert checks["tc"]["by_guidance_scale_class_named"] == {"2.0": {"class_kept": round(2 / 3, 4), "views": 3}}
    assert checks["tc"]["class_kept_class_not_named"] == 0.0
    rendered = render_checks_markdown({"about": "", "views": checks, "judge": {"test_accuracy": 0.99, "epochs": 1}})
    assert "captions naming the class" in rendered


def test_the_judges_agreement_with_the_records_counts_each_disagreeing_view(files):
    views, paths, root = files
    judged = _judged(paths)
    judged.loc[judged.index[:2], "judged_label"] = "ring"  # two IC views judged as another class
    checks = view_checks(judged, [root / "complexity.csv"])
    assert checks["ic"]["judge_agrees_with_records"] == round(1 / 3, 4)
    assert checks["tc"]["judge_agrees_with_records"] == 1.0


def test_quality_auc_is_the_share_of_faithful_above_changed_pairs():
    pairs = pd.DataFrame(
        {
            "quality": [0.9, 0.7, 0.4, 0.5, 0.1, 0.6],
            "class_changed": [False, False, False, True, True, True],
            "source": ["ic", "ic", "tc", "ic", "tc", "tc"],
            "noise_level": [0, 0, None, 0, None, None],
            "guidance_scale": [None, None, 2.0, None, 2.0, 2.0],
        }
    )
    faithful = pairs.quality[~pairs.class_changed]
    changed = pairs.quality[pairs.class_changed]
    plain = sum(f > c for f, c in itertools.product(faithful, changed)) / (len(faithful) * len(changed))
    result = quality_auc(pairs)
    assert result["auc"] == pytest.approx(plain, abs=1e-4)
    assert (result["pairs"], result["class_changed"]) == (6, 3)
    assert quality_auc(pairs.assign(class_changed=False))["auc"] is None


def test_quality_auc_within_strata_is_blind_to_a_score_that_only_reads_the_noise_level():
    rng = np.random.default_rng(0)
    levels = np.repeat([0, 200, 400], 200)
    changed = rng.random(len(levels)) < levels / 500  # class changes grow with the noise level
    pairs = pd.DataFrame({"source": "ic", "noise_level": levels, "guidance_scale": np.nan, "class_changed": changed})
    level_only = quality_auc(pairs.assign(quality=-levels + rng.normal(0, 1e-3, len(levels))))
    assert level_only["auc"] > 0.7  # overall the level alone looks informative
    assert level_only["within_strata"] == pytest.approx(0.5, abs=0.1)  # within a level it is not
    informative = quality_auc(pairs.assign(quality=~changed + rng.normal(0, 0.5, len(levels))))
    # The pair-weighted mean of the per-stratum AUCs, recomputed plainly.
    plain = []
    for level in (0, 200, 400):
        group = informative["strata"][f"ic noise {level}"]
        plain.append((group["auc"], group["pairs"]))
    expected = sum(a * n for a, n in plain if a is not None) / sum(n for a, n in plain if a is not None)
    assert informative["within_strata"] == pytest.approx(expected, abs=1e-3)
    assert informative["within_strata"] > 0.7


def test_foreground_checks_compare_the_given_noise_levels_with_the_true_masks(tmp_path):
    shares = {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.9}  # true levels 0, 100, 200, 400
    rows = []
    for image_id, share in shares.items():
        mask = np.zeros((10, 10), np.uint8)
        mask.flat[: int(share * 100)] = 255
        Image.fromarray(mask).save(tmp_path / f"{image_id}.png")
        rows.append({"id": image_id, "mask": str(tmp_path / f"{image_id}.png")})
    MANIFEST.write(pd.DataFrame(rows).assign(path="", caption="", label="", split="train"), tmp_path / "m.csv")
    given = {"a": (0.12, 0), "b": (0.35, 100), "c": (0.25, 100), "d": (0.95, 400)}
    FOREGROUND.write(
        pd.DataFrame(
            [
                {"id": i, "fg_ratio": r, "noise_level": n, "mask_iou": 0.5 + 0.1 * k}
                for k, (i, (r, n)) in enumerate(given.items())
            ]
        ),
        tmp_path / "fg.csv",
    )
    result = foreground_checks([tmp_path / "fg.csv"], tmp_path / "m.csv", [0.2, 0.4, 0.6, 0.8], [0, 100, 200, 300, 400])
    assert result["level_agreement"] == 0.75 and result["level_within_one"] == 1.0
    assert result["iou"] == pytest.approx(0.65) and result["iou_all_foreground"] == pytest.approx(0.45)
    assert result["confusion"]["200"] == {"0": 0, "100": 1, "400": 0}
    assert result["ratio_correlation"] == pytest.approx(0.8)  # Spearman of (1, 3, 2, 4) with (1, 2, 3, 4)


def test_training_weights_are_split_by_whether_the_generated_view_changed_class(tmp_path):
    records = [
        {
            "type": "step",
            "weight_sum_changed": 1.0,
            "pairs_changed": 2,
            "weight_sum_faithful": 6.0,
            "pairs_faithful": 5,
        },
        {
            "type": "step",
            "weight_sum_changed": 0.5,
            "pairs_changed": 1,
            "weight_sum_faithful": 4.0,
            "pairs_faithful": 3,
        },
        {"type": "epoch", "loss": 1.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = training_weight_checks([tmp_path / "metrics.jsonl"])
    assert result["mean_weight_changed"] == pytest.approx(0.5) and result["mean_weight_faithful"] == pytest.approx(1.25)
    assert result["ratio"] == pytest.approx(0.4)
    assert check_goal("training_weight_ratio", result["ratio"])["passed"] is True


def test_goals_carry_value_threshold_and_pass():
    fg = {"iou": 0.4, "iou_all_foreground": 0.3, "level_agreement": 0.8, "ratio_correlation": 0.9}
    goals = {g["key"]: g for g in default_goals({"foreground": fg})}
    assert goals["foreground_iou"]["passed"] is False and goals["foreground_iou"]["threshold"] == 0.5
    assert goals["foreground_iou_over_all_foreground"]["value"] == pytest.approx(0.1)
    assert goals["noise_level_agreement"]["passed"] is True
    assert check_goal("judge_test_accuracy", None)["passed"] is None


def test_a_saved_pixel_judge_loads_with_the_same_weights_classes_and_accuracy(tmp_path):
    """The judge is trained in its own job and read by the checks' job: what the file holds is the judge."""
    import torch

    from genview.report.checks import train_judge
    from genview.report.pixel_judge import load_images, load_pixel_judge, save_pixel_judge

    manifest = indexed_shapes(tmp_path, train_per_class=4, test_per_class=2)
    judge = train_judge(tmp_path / "manifest.csv", epochs=1, seed=0)
    save_pixel_judge(judge, tmp_path / "judge.pt")
    loaded = load_pixel_judge(tmp_path / "judge.pt")
    assert (loaded.classes, loaded.image_size, loaded.settings, loaded.test_accuracy) == (
        judge.classes,
        judge.image_size,
        judge.settings,
        judge.test_accuracy,
    )
    assert loaded.settings["epochs"] == 1 and loaded.test_accuracy is not None
    images = load_images(list(manifest.path), judge.image_size)
    other = train_judge(tmp_path / "manifest.csv", epochs=1, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded.model(images), judge.model(images))
        assert not torch.equal(other.model(images), judge.model(images))  # another seed: another judge
