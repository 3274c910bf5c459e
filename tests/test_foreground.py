"""Foreground ratio (docs/method.md §1): each formula re-computed plainly, the tiny open_clip stand-in, and the
two file-level steps end to end on a small `shapes` set."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from genview.analysis.foreground import (
    fit_foreground,
    foreground_ratio,
    foreground_shard,
    load_fit,
    noise_level_for,
    token_masks_to_iou,
)
from genview.analysis.pc1 import (
    TokenMoments,
    choose_fit_sample,
    choose_sign,
    fit_pc1,
    project,
    threshold_from_histogram,
)
from genview.data.images import load_rgb
from genview.errors import BadInputError, GenviewError
from genview.models.open_clip_models import (
    build_tiny_open_clip,
    load_open_clip,
    patch_tokens,
    token_grid,
)

EDGES = [0.2, 0.4, 0.6, 0.8]
LEVELS = [0, 100, 200, 300, 400]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    folder = build_tiny_open_clip(tmp_path_factory.mktemp("models") / "fg_encoder")
    return {"model": f"local-dir:{folder}", "pretrained": None}


# --- threshold ----------------------------------------------------------------------------------------------


def plain_threshold(values, bins, cdf):
    """The rule read literally: equal bins on [min, max], the last one closed; first bin reaching cdf."""
    values = np.asarray(values, dtype=np.float64)
    edges = [values.min() + k * (values.max() - values.min()) / bins for k in range(bins + 1)]
    for k in range(bins):
        below_right_edge = values <= edges[k + 1] if k == bins - 1 else values < edges[k + 1]
        if below_right_edge.sum() / len(values) >= cdf:
            return edges[k]


def test_threshold_is_left_edge_of_first_bin_reaching_the_share():
    # 20 values, 20 bins of width 0.95: one value per bin, so 13/20 = 0.65 is first reached in bin 12.
    values = np.arange(20.0)
    threshold = threshold_from_histogram(values, bins=20, cdf=0.65)
    assert threshold == pytest.approx(12 * 19 / 20)
    assert (values > threshold).mean() == pytest.approx(0.40)


def test_threshold_bin_edge_cases():
    # The share lands exactly on cdf in bin 1 (2 of 4): that bin counts, not the next one.
    assert threshold_from_histogram([0.0, 1.0, 2.0, 3.0], bins=4, cdf=0.5) == pytest.approx(0.75)
    # Empty bins after the bin that reaches cdf: still the first such bin (edge 1). The official dict lookup
    # would return the last bin with the same cumulative share (edge 8) here.
    values = [0.0, 0.0, 0.0, 1.0, 10.0]
    assert threshold_from_histogram(values, bins=10, cdf=0.6) == 0.0
    assert threshold_from_histogram(values, bins=10, cdf=0.61) == 1.0
    # cdf 1 is reached only by the last bin, which holds the maximum.
    assert threshold_from_histogram(values, bins=10, cdf=1.0) == 9.0
    with pytest.raises(ValueError):
        threshold_from_histogram(values, cdf=0.0)
    with pytest.raises(ValueError):
        threshold_from_histogram([], cdf=0.5)


@pytest.mark.parametrize("seed", range(5))
def test_threshold_matches_plain_rule_on_random_values(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1, 3000), rng.normal(4, 0.5, 1000)]).astype(np.float32)
    for bins, cdf in ((200, 0.65), (7, 0.3), (50, 0.99)):
        expected = plain_threshold(values, bins, cdf)
        assert threshold_from_histogram(torch.from_numpy(values), bins, cdf) == pytest.approx(expected, abs=1e-12)


# --- PCA and projection -------------------------------------------------------------------------------------


def test_projection_is_not_centred():
    rng = np.random.default_rng(0)
    offset = np.full(8, 50.0)
    tokens = torch.from_numpy(rng.normal(size=(100, 8)) + offset)
    vector = torch.from_numpy(np.ones(8) / math.sqrt(8))
    uncentred = tokens.numpy() @ vector.numpy()
    centred = (tokens.numpy() - tokens.numpy().mean(0)) @ vector.numpy()
    ours = project(tokens, vector).numpy()
    assert np.allclose(ours, uncentred)
    assert not np.allclose(ours, centred)
    assert ours.mean() == pytest.approx(offset @ vector.numpy(), rel=0.01)
    # Leading axes are kept: (B, T, D) -> (B, T).
    assert project(tokens.reshape(4, 25, 8), vector).shape == (4, 25)


def test_fit_pc1_finds_the_dominant_direction_of_centred_data():
    rng = np.random.default_rng(1)
    direction = rng.normal(size=16)
    direction /= np.linalg.norm(direction)
    data = 5 * rng.normal(size=(2000, 1)) * direction + 0.3 * rng.normal(size=(2000, 16)) + 10 * rng.normal(size=16)
    tokens = torch.from_numpy(data).float()
    vector = fit_pc1(tokens)
    assert vector.shape == (16,) and vector.dtype == torch.float32
    assert float(vector.norm()) == pytest.approx(1.0, abs=1e-5)
    assert abs(float(vector.double() @ torch.from_numpy(direction))) > 0.99
    # Same as numpy's eigenvector of the centred covariance, up to the sign we fix (largest component > 0).
    _, eigenvectors = np.linalg.eigh(np.cov(data.T))
    reference = eigenvectors[:, -1] * np.sign(eigenvectors[np.abs(eigenvectors[:, -1]).argmax(), -1])
    assert np.allclose(vector.numpy(), reference, atol=1e-4)
    # Centred covariance: a constant shift of every token changes nothing.
    assert torch.allclose(fit_pc1(tokens + 100), vector, atol=1e-4)


def test_moments_added_in_batches_match_one_pass():
    tokens = torch.randn(3, 50, 12, generator=torch.Generator().manual_seed(0)) + 2
    moments = TokenMoments()
    for batch in tokens:
        moments.add(batch)
    assert torch.allclose(moments.pc1(), fit_pc1(tokens.reshape(-1, 12)), atol=1e-6)


# --- sign ---------------------------------------------------------------------------------------------------


def plain_sign(projections, grid, bins, cdf):
    """The documented rule, with loops: per sign its own threshold, then the mean centre distance above it."""
    h, w = grid
    mean_distance = {}
    for sign in (1, -1):
        signed = sign * projections.numpy()
        threshold = plain_threshold(signed.ravel(), bins, cdf)
        distances = [
            math.hypot((t // w + 0.5) / h - 0.5, (t % w + 0.5) / w - 0.5)
            for image in signed
            for t, value in enumerate(image)
            if value > threshold
        ]
        mean_distance[sign] = sum(distances) / len(distances) if distances else math.inf
    return 1 if mean_distance[1] <= mean_distance[-1] else -1


def central_object_projections(seed, grid=(6, 6), images=20):
    """High projections on a central block, low elsewhere, plus noise."""
    rng = np.random.default_rng(seed)
    h, w = grid
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    central = (abs(rows - (h - 1) / 2) < h / 4) & (abs(cols - (w - 1) / 2) < w / 4)
    values = np.where(central, 2.0, -1.0).ravel() + rng.normal(0, 0.7, size=(images, h * w))
    return torch.from_numpy(values).float()


def test_choose_sign_prefers_central_foreground():
    projections = central_object_projections(0)
    assert choose_sign(projections, (6, 6)) == 1
    assert choose_sign(-projections, (6, 6)) == -1


@pytest.mark.parametrize("seed", range(6))
def test_choose_sign_matches_plain_rule(seed):
    # Skewed random projections with a weak central bias, so both orientations are close contenders and each
    # needs its own threshold (with seed 2, reusing the +1 threshold for -1 would give the other answer).
    rng = np.random.default_rng(seed)
    grid = (5, 7)
    bias = torch.from_numpy(rng.normal(0, 0.3, size=35)).float()
    projections = torch.from_numpy(rng.gamma(2.0, 1.0, size=(15, 35))).float() * rng.choice([1, -1]) + bias
    assert choose_sign(projections, grid, bins=30, cdf=0.65) == plain_sign(projections, grid, 30, 0.65)


def test_choose_sign_rejects_a_wrong_grid():
    with pytest.raises(ValueError, match="grid"):
        choose_sign(torch.zeros(2, 10), (3, 3))


# --- ratio, noise level, IoU --------------------------------------------------------------------------------


def test_foreground_ratio_counts_strictly_above():
    projections = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.5, 5.0]])
    ratio = foreground_ratio(projections, 2.5)
    assert ratio.dtype == torch.float64 and ratio.tolist() == [0.5, 0.25]
    # 3 of 15 tokens is the edge 0.2 exactly, so it stays in the lowest noise bin.
    on_edge = foreground_ratio(torch.tensor([[1.0] * 3 + [0.0] * 12]), 0.5)
    assert float(on_edge) == 0.2 and noise_level_for(float(on_edge), EDGES, LEVELS) == 0


EPS = 1e-9


@pytest.mark.parametrize(
    "ratio, level",
    [(0, 0), (0.2, 0), (0.2 + EPS, 100), (0.4, 100), (0.4 + EPS, 200), (0.6, 200), (0.6 + EPS, 300),
     (0.8, 300), (0.8 + EPS, 400), (1, 400)],
)  # fmt: skip
def test_noise_level_at_every_edge(ratio, level):
    assert noise_level_for(ratio, EDGES, LEVELS) == level


def test_noise_level_arrays_and_errors():
    ratios = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    expected = [0, 0, 100, 200, 300, 400, 400]
    assert noise_level_for(np.array(ratios), EDGES, LEVELS).tolist() == expected
    assert noise_level_for(torch.tensor(ratios, dtype=torch.float64), EDGES, LEVELS).tolist() == expected
    for bad in (-0.01, 1.01, math.nan, [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            noise_level_for(bad, EDGES, LEVELS)
    with pytest.raises(ValueError, match="one level more"):
        noise_level_for(0.5, EDGES, LEVELS[:-1])


def test_iou_of_upsampled_token_masks():
    pred = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
    gt = torch.zeros(2, 4, 4, dtype=torch.bool)
    gt[0, :2, :3] = True  # token (0, 0) covers pixels [:2, :2]: intersection 4, union 6
    assert token_masks_to_iou(pred, gt).tolist() == pytest.approx([4 / 6, 1.0])  # empty vs empty = 1
    gt[1, 3, 3] = True
    assert float(token_masks_to_iou(pred[1:], gt[1:])[0]) == 0.0
    # Plainly: nearest upsampling by an integer factor is a Kronecker product with a block of ones.
    rng = np.random.default_rng(0)
    pred, gt = rng.random((3, 4, 4)) > 0.5, rng.random((3, 12, 12)) > 0.5
    up = np.stack([np.kron(p, np.ones((3, 3))) > 0 for p in pred])
    plain = (up & gt).sum((1, 2)) / (up | gt).sum((1, 2))
    assert np.allclose(token_masks_to_iou(torch.from_numpy(pred), torch.from_numpy(gt)).numpy(), plain)


# --- sample -------------------------------------------------------------------------------------------------


def manifest(labelled=True, n=60):
    return pd.DataFrame(
        dict(id=f"{i * 7919 % 1000:04d}", path=f"{i}.png", caption="", label=f"c{i % 4}" if labelled else "",
             split="train" if i < n - 5 else "test", mask="")
        for i in range(n)
    )  # fmt: skip


def test_fit_sample_per_class_or_fixed_size_independent_of_row_order():
    frame = manifest()
    sample = choose_fit_sample(frame, per_class=3, sample_size=999, seed=0)
    assert len(sample) == 12 and sample.label.value_counts().tolist() == [3, 3, 3, 3]
    assert (sample.split == "train").all() and list(sample.id) == sorted(sample.id)
    shuffled = frame.sample(frac=1, random_state=1)
    assert list(choose_fit_sample(shuffled, per_class=3, sample_size=999, seed=0).id) == list(sample.id)
    assert list(choose_fit_sample(frame, per_class=3, sample_size=999, seed=1).id) != list(sample.id)
    unlabelled = choose_fit_sample(manifest(labelled=False), per_class=3, sample_size=10, seed=0)
    assert len(unlabelled) == 10
    assert len(choose_fit_sample(manifest(labelled=False), per_class=3, sample_size=10**6, seed=0)) == 55


# --- open_clip ----------------------------------------------------------------------------------------------


def test_tiny_open_clip_builds_reloads_and_gives_patch_tokens(tiny_encoder, tmp_path):
    import open_clip

    folder = tiny_encoder["model"].removeprefix("local-dir:")
    again = build_tiny_open_clip(tmp_path / "again")
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        assert (again / name).read_bytes() == (tmp_path / folder / name).read_bytes()  # seeded

    model, preprocess = load_open_clip(tiny_encoder)
    reloaded, _ = load_open_clip({"model": f"local-dir:{again}"})
    assert not model.training and token_grid(model) == (8, 8)
    images = torch.stack([preprocess(Image.new("RGB", (50, 40), c)) for c in ("red", "white", "navy")])
    with torch.no_grad():
        tokens = patch_tokens(model, images)
        assert tokens.shape == (3, 64, 64)
        assert torch.equal(tokens, patch_tokens(reloaded, images))
        # After the final LayerNorm, without projection: what the ViT computes before pooling.
        visual = model.visual
        assert torch.equal(tokens, visual.ln_post(visual.transformer(visual._embeds(images)))[:, 1:])
        assert model.encode_image(images).shape == (3, 64)  # the flag is only set during patch_tokens
    tokenizer = open_clip.get_tokenizer(tiny_encoder["model"])
    assert tokenizer(["a photo of a cat"])[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_load_open_clip_errors_name_the_path_and_role(tmp_path):
    with pytest.raises(GenviewError, match=r"models\.fg_encoder.*nowhere"):
        load_open_clip({"model": f"local-dir:{tmp_path / 'nowhere'}"})
    with pytest.raises(GenviewError, match="no patch tokens"):
        patch_tokens(SimpleNamespace(visual=torch.nn.Conv2d(3, 4, 2)), torch.zeros(1, 3, 4, 4))


# --- end to end ---------------------------------------------------------------------------------------------


@pytest.fixture
def shapes_shards(tmp_path, monkeypatch):
    from helpers import indexed_shapes

    from genview.data.shard import write_shards

    monkeypatch.chdir(tmp_path)
    indexed_shapes(tmp_path, train_per_class=3)
    shards = write_shards("manifest.csv", 2, "results/data/s/shards")
    return "manifest.csv", shards


@pytest.mark.slow
def test_fit_and_shards_end_to_end(shapes_shards, tiny_encoder):
    manifest_csv, shards = shapes_shards
    fit = fit_foreground(manifest_csv, tiny_encoder, "a/fit.npz", "a/overlay.png", per_class=2, batch_size=8)
    saved = load_fit("a/fit.npz")
    assert set(saved) == {
        "vector",
        "threshold",
        "sign",
        "threshold_mode",
        "sample_ids",
        "cdf",
        "bins",
        "grid",
        "mean_iou",
        "encoder_stamp",
    }
    assert str(saved["threshold_mode"]) == "refit"
    assert saved["vector"].dtype == np.float32 and saved["vector"].shape == (64,)
    assert int(saved["sign"]) in (1, -1) and saved["grid"].tolist() == [8, 8]
    assert len(saved["sample_ids"]) == 24 and float(saved["cdf"]) == 0.65 and int(saved["bins"]) == 200
    assert 0 <= float(saved["mean_iou"]) <= 1
    with Image.open("a/overlay.png") as overlay:
        overlay.verify()

    # The stored threshold is the histogram rule on the sample's tokens @ the stored (signed) vector.
    manifest = pd.read_csv(manifest_csv, dtype=str, keep_default_na=False).set_index("id")
    rows = manifest.loc[saved["sample_ids"]]
    model, preprocess = load_open_clip(tiny_encoder)
    with torch.no_grad():
        tokens = patch_tokens(model, torch.stack([preprocess(load_rgb(p)) for p in rows.path]))
    projections = (tokens @ torch.from_numpy(saved["vector"])).numpy()
    assert float(saved["threshold"]) == pytest.approx(plain_threshold(projections.ravel(), 200, 0.65), abs=1e-6)
    # Forcing a sign flips the vector; auto is one of the two.
    forced = {s: fit_foreground(manifest_csv, tiny_encoder, f"{s}.npz", f"{s}.png", per_class=2, sign=s)
              for s in (1, -1)}  # fmt: skip
    assert np.allclose(forced[1]["vector"], -forced[-1]["vector"])
    assert np.array_equal(forced[int(saved["sign"])]["vector"], fit["vector"])
    # A flipped PC-1 under the official `--mask-type lt` (keep): the unflipped threshold, tokens below it, so about
    # 65 % of the tokens are foreground where refit gives about 35 %.
    kept = fit_foreground(
        manifest_csv, tiny_encoder, "keep.npz", "keep.png", per_class=2, sign=-1, flipped_threshold="keep"
    )
    unflipped = (tokens @ torch.from_numpy(forced[1]["vector"])).numpy()
    assert str(kept["threshold_mode"]) == "keep" and str(forced[-1]["threshold_mode"]) == "refit"
    assert float(kept["threshold"]) == pytest.approx(-plain_threshold(unflipped.ravel(), 200, 0.65), abs=1e-6)
    share = {
        mode: float(((tokens @ torch.from_numpy(f["vector"])).numpy() > float(f["threshold"])).mean())
        for mode, f in (("keep", kept), ("refit", forced[-1]))
    }
    assert share["keep"] == pytest.approx(0.65, abs=0.05) and share["refit"] == pytest.approx(0.35, abs=0.05)

    frames = []
    for shard in shards:
        frame = foreground_shard(shard, "a/fit.npz", tiny_encoder, f"a/fg/{shard.name}",
                                 noise_edges=EDGES, noise_levels=LEVELS, batch_size=5)  # fmt: skip
        written = pd.read_csv(f"a/fg/{shard.name}")
        assert list(written.columns) == ["id", "fg_ratio", "noise_level", "mask_iou"]
        assert len(written) == len(pd.read_csv(shard))
        pd.testing.assert_frame_equal(written, frame.reset_index(drop=True), check_dtype=False)
        frames.append(written)
    result = pd.concat(frames)
    assert len(result) == 36 and result.id.is_unique
    assert result.fg_ratio.between(0, 1).all() and result.mask_iou.between(0, 1).all()
    assert set(result.noise_level) <= set(LEVELS)
    assert result.noise_level.tolist() == [noise_level_for(r, EDGES, LEVELS) for r in result.fg_ratio]
    # Ratios are shares of the 64 tokens.
    assert np.allclose(result.fg_ratio * 64, np.round(result.fg_ratio * 64))

    # Same inputs, same outputs.
    fit_foreground(manifest_csv, tiny_encoder, "b/fit.npz", "b/overlay.png", per_class=2, batch_size=8)
    again = load_fit("b/fit.npz")
    for key in saved:
        assert np.array_equal(saved[key], again[key]), key
    foreground_shard(shards[0], "b/fit.npz", tiny_encoder, "b/0.csv", noise_edges=EDGES, noise_levels=LEVELS)
    assert Path("b/0.csv").read_bytes() == Path(f"a/fg/{shards[0].name}").read_bytes()


def test_shard_bad_inputs(shapes_shards, tiny_encoder, tmp_path):
    manifest_csv, shards = shapes_shards
    fit_foreground(manifest_csv, tiny_encoder, "fit.npz", "overlay.png", per_class=1)
    rows = pd.read_csv(shards[0], dtype=str, keep_default_na=False).head(2)
    rows.loc[1, "path"] = "broken.png"
    Path("broken.png").write_bytes(b"not a png")
    rows.to_csv("bad.csv", index=False)
    with pytest.raises(BadInputError, match="broken.png"):
        foreground_shard("bad.csv", "fit.npz", tiny_encoder, "out.csv", noise_edges=EDGES, noise_levels=LEVELS)
    other = build_tiny_open_clip(tmp_path / "other", patch_size=8)
    with pytest.raises(BadInputError, match="fitted with another models.fg_encoder"):
        foreground_shard(shards[0], "fit.npz", {"model": f"local-dir:{other}"}, "out.csv",
                         noise_edges=EDGES, noise_levels=LEVELS)  # fmt: skip
    # An empty shard still gets its (header-only) output.
    rows.head(0).to_csv("empty.csv", index=False)
    empty = foreground_shard("empty.csv", "fit.npz", tiny_encoder, "empty_out.csv", noise_edges=EDGES,
                             noise_levels=LEVELS)  # fmt: skip
    assert empty.empty and Path("empty_out.csv").read_text().strip() == "id,fg_ratio,noise_level,mask_iou"
