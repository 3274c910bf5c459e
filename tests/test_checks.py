"""The ground-truth checks (genview.report.checks) against plain recomputations on hand-made view manifests."""

import itertools

import pandas as pd
import pytest

from genview.contracts import COMPLEXITY, MANIFEST, VIEWS
from genview.report.checks import quality_auc, render_checks_markdown, view_checks

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


def test_class_kept_per_source_and_level_is_the_share_of_unchanged_views(files):
    views, paths, root = files
    checks = view_checks(paths, [root / "complexity.csv"], root / "manifest.csv")
    for source, frame in views.groupby("source"):
        assert checks[source]["class_kept"] == pytest.approx(1 - frame.class_changed.mean(), abs=1e-4)
    assert checks["ic"]["by_noise_level"] == {
        "0": {"class_kept": 1.0, "views": 2},
        "400": {"class_kept": 0.0, "views": 1},
    }
    assert checks["tc"]["by_guidance_scale"]["2.0"] == {"class_kept": round(2 / 3, 4), "views": 3}
    assert checks["tc"]["by_complexity"]["4"] == {"class_kept": 0.5, "views": 2}
    # Captions of a and c name their shape, b's does not ("a large shape").
    assert checks["tc"]["by_guidance_scale_class_named"] == {"2.0": {"class_kept": round(2 / 3, 4), "views": 3}}
    assert checks["tc"]["class_kept_class_not_named"] == 0.0
    assert "captions naming the class" in render_checks_markdown({"about": "", "views": checks})


def test_quality_auc_is_the_share_of_faithful_above_changed_pairs():
    pairs = pd.DataFrame(
        {
            "quality": [0.9, 0.7, 0.4, 0.5, 0.1, 0.6],
            "class_changed": [False, False, False, True, True, True],
            "source": ["ic", "ic", "tc", "ic", "tc", "tc"],
        }
    )
    faithful = pairs.quality[~pairs.class_changed]
    changed = pairs.quality[pairs.class_changed]
    plain = sum(f > c for f, c in itertools.product(faithful, changed)) / (len(faithful) * len(changed))
    result = quality_auc(pairs)
    assert result["auc"] == pytest.approx(plain, abs=1e-4)
    assert (result["pairs"], result["class_changed"]) == (6, 3)
    assert quality_auc(pairs.assign(class_changed=False))["auc"] is None
