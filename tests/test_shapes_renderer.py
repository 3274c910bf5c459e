"""The shapes renderer fills the generator roles with views whose ground truth is known, following the world's
premises (docs/method.md, section 6): IC redraws more of the source as the noise rises and loses a small object's
class at a lower noise level than a large one's; TC renders what the caption states, a short caption breaking more at
low guidance and a detailed one at high guidance; every view's record reaches the view manifest."""

import contextlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genview.config.load import validate_config
from genview.contracts import VIEWS
from genview.data.index import index_dataset
from genview.data.shapes import CONSTRAINTS, _make_sample, make_shapes, parse_caption
from genview.data.shapes_renderer import DEFAULT_RULES, class_change_probability, guidance_break_probability
from genview.data.shard import write_shards
from genview.generation.views import generate_shard
from genview.models.diffusion import load_pipeline


def test_captions_are_read_back_exactly():
    for i in range(500):
        _, _, caption, _, n_constraints, attributes = _make_sample(
            ("circle", "star", "ring")[i % 3], 32, np.random.default_rng(i)
        )
        stated = parse_caption(caption)
        assert all(attributes[key] == value for key, value in stated.items()), caption
        assert len(stated) == n_constraints and set(stated) <= {*CONSTRAINTS, "label"} - {"shape"}, caption


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    root = tmp_path_factory.mktemp("renderer")
    with contextlib.chdir(root):
        make_shapes("results/datasets/shapes", image_size=32, train_per_class=10, test_per_class=1)
        spec = validate_config({"datasets": {"shapes": {"kind": "shapes"}}})["datasets"]["shapes"]
        index_dataset("shapes", spec, "results/data/shapes")
        write_shards("results/data/shapes/manifest.csv", 1, "results/data/shapes/shards")
    return root


def views(root, source, noise_level=0, guidance=6.0, name="v"):
    generation = validate_config(
        {
            "generation": {
                "steps": 1,
                "batch_size": 8,
                "save_size": 32,
                "tc": {"guidance_scale": "adaptive"},
                "ic": {"noise_level": "adaptive"},
            }
        }
    )["generation"]
    with contextlib.chdir(root):
        rows = pd.read_csv("results/data/shapes/shards/0.csv", dtype=str)
        pd.DataFrame({"id": rows.id, "noise_level": noise_level, "guidance_scale": guidance}).to_csv(
            f"{name}.params.csv", index=False
        )
        role = "text2img" if source == "tc" else "unclip"
        generate_shard(
            source=source,
            shard_csv="results/data/shapes/shards/0.csv",
            params=pd.read_csv(f"{name}.params.csv", dtype={"id": str}),
            views_dir=name,
            out_manifest=f"{name}.csv",
            seed=0,
            generation=generation,
            pipeline=load_pipeline(role, {"renderer": "shapes", "dataset": "shapes"}),
        )
        manifest = VIEWS.read(f"{name}.csv").merge(rows[["id", "caption", "label"]], on="id")
    return manifest


def test_the_premises_as_functions():
    rule = DEFAULT_RULES["class_change"]
    assert class_change_probability(0, 0.05, rule) == 0.0
    # One noise level loses a small object more often than a large one; more noise loses more.
    assert class_change_probability(200, 0.05, rule) > class_change_probability(200, 0.3, rule)
    assert class_change_probability(400, 0.3, rule) > class_change_probability(200, 0.3, rule)
    # The adaptive rule's level for a share (0.2 -> 100, 0.4 -> 200, ...) keeps the class.
    for share, level in ((0.05, 0), (0.25, 100), (0.45, 200), (0.65, 300)):
        assert class_change_probability(level, share, rule) == 0.0
    rule = DEFAULT_RULES["guidance_break"]
    assert guidance_break_probability(2, 1, rule) > guidance_break_probability(8, 1, rule)  # short: low drifts
    assert guidance_break_probability(8, 7, rule) > guidance_break_probability(2, 7, rule)  # detailed: high breaks


def test_image_conditioned_views_drift_with_the_noise_level_and_lose_small_objects_first(shard):
    masks = {}
    with contextlib.chdir(shard):
        rows = pd.read_csv("results/data/shapes/manifest.csv", dtype=str)
        for row in rows.itertuples():
            with Image.open(row.mask) as mask:
                masks[row.id] = float((np.asarray(mask) > 127).mean())
    kept_class, kept_attributes = [], []
    for level in (0, 100, 200, 300, 400):
        manifest = views(shard, "ic", noise_level=level, name=f"ic{level}")
        assert (manifest.view_label == manifest.label).eq(~manifest.class_changed.astype(bool)).all()
        share = manifest.id.map(masks)
        expected = share.map(lambda s, level=level: class_change_probability(level, s, DEFAULT_RULES["class_change"]))
        assert manifest.class_changed.mean() == pytest.approx(expected.mean(), abs=0.12)
        if level == 200:
            small = share < share.median()
            assert manifest.class_changed[small].mean() > manifest.class_changed[~small].mean()
        kept_class.append(1 - manifest.class_changed.mean())
        kept_attributes.append(manifest.kept_attributes.str.split(";").map(len).mean())
    assert kept_class[0] == 1.0 and kept_class[4] < kept_class[2] < kept_class[0]
    assert all(a > b for a, b in zip(kept_attributes, kept_attributes[1:]))


def test_text_conditioned_views_break_short_captions_at_low_and_detailed_ones_at_high_guidance(shard):
    broken = {}
    for guidance in (8.0, 6.0, 2.0):
        manifest = views(shard, "tc", guidance=guidance, name=f"tc{int(guidance)}")
        named = manifest.caption.map(lambda caption: "label" in parse_caption(caption))
        assert named.any() and (~named).any()
        assert 1 - manifest.class_changed[~named].mean() < 0.3, "a caption that names no shape gives any class"
        stated = manifest.caption.map(lambda c: len(parse_caption(c)))
        honoured = manifest.kept_attributes.map(lambda k: len([a for a in k.split(";") if a]))
        share_broken = (stated - honoured) / stated.clip(lower=1)
        broken[guidance] = {
            "short": float(share_broken[(stated > 0) & (stated <= 3)].mean()),
            "detailed": float(share_broken[stated >= 6].mean()),
        }
    assert broken[2.0]["short"] > broken[6.0]["short"] + 0.1
    assert broken[8.0]["detailed"] > broken[2.0]["detailed"] + 0.15


def test_records_survive_a_rerun_that_reuses_the_views(shard):
    first = views(shard, "itc", noise_level=300, guidance=4.0, name="itc")
    again = views(shard, "itc", noise_level=300, guidance=4.0, name="itc")
    columns = ["id", "view", "view_label", "class_changed", "kept_attributes"]
    pd.testing.assert_frame_equal(first[columns], again[columns])
