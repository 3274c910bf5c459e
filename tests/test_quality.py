"""Quality weights (docs/method.md §3): each formula against a plain re-computation or hand-computed values, the
tiny ConvNeXt quality encoder, the scorer on it, and the PC-1 fit on a small `shapes` set."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genview.errors import BadInputError, ConfigError
from genview.models.open_clip_models import (
    build_tiny_open_clip,
    build_tiny_quality_encoder,
    load_open_clip,
    patch_tokens,
    token_map_and_embedding,
)
from genview.quality.encoder import QualityEncoder, QualityScorer, fit_quality_vector, load_quality_vector
from genview.quality.weights import (
    genview_weights,
    image_image_weights,
    image_text_weights,
    loss_coefficients,
    pooled_features,
    soft_masks,
)


def cosine(x, y):
    return float(x @ y / (x.norm() * y.norm()))


# --- formulas -----------------------------------------------------------------------------------------------


def test_soft_masks_are_min_max_scaled_and_sum_to_one():
    projections = torch.tensor([[1.0, 3.0, 2.0, 1.5], [-4.0, 0.0, -2.0, 4.0]])
    fg, bg = soft_masks(projections)
    for a, fg_row, bg_row in zip(projections, fg, bg):
        scaled = [(x - a.min()) / (a.max() - a.min() + 1e-7) for x in a]
        fg_raw = torch.tensor(scaled)
        bg_raw = 1 - fg_raw
        torch.testing.assert_close(fg_row, fg_raw / (fg_raw.sum() + 1e-7))
        torch.testing.assert_close(bg_row, bg_raw / (bg_raw.sum() + 1e-7))
        # The lowest token is all background, the highest (all but 1e-7) all foreground.
        assert fg_row[a.argmin()] == 0 and bg_row[a.argmax()] < 1e-6
        assert fg_raw[a.argmax()] == pytest.approx(1, abs=1e-6)
    torch.testing.assert_close(fg.sum(-1), torch.ones(2))
    torch.testing.assert_close(bg.sum(-1), torch.ones(2))


def test_soft_masks_of_a_flat_image_give_a_uniform_background():
    fg, bg = soft_masks(torch.full((1, 4), 2.5))
    assert torch.equal(fg, torch.zeros(1, 4))
    torch.testing.assert_close(bg, torch.full((1, 4), 0.25))


def test_pooled_features_are_the_mask_weighted_sum():
    tokens = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(3, 5, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([sum(mask[b, t] * tokens[b, t] for t in range(5)) for b in range(3)])
    torch.testing.assert_close(pooled_features(tokens, mask), expected)


def test_genview_weights_are_n_times_softmax_of_quality():
    generator = torch.Generator().manual_seed(0)
    fg1, bg1, fg2, bg2 = (torch.randn(6, 8, generator=generator) for _ in range(4))
    for gamma in (1.0, 2.5):
        quality = [cosine(fg1[i], fg2[i]) - cosine(bg1[i], bg2[i]) for i in range(6)]
        total = sum(math.exp(gamma * q) for q in quality)
        expected = torch.tensor([6 * math.exp(gamma * q) / total for q in quality])
        weights = genview_weights(fg1, bg1, fg2, bg2, gamma)
        torch.testing.assert_close(weights, expected)
        assert float(weights.mean()) == pytest.approx(1)


def test_genview_weights_favour_same_foreground_and_different_background():
    # Pair 0: same foreground, different background; pair 1: different foreground, same background.
    first = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    fg2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    bg2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    weights = genview_weights(first, first, fg2, bg2)
    # q = (1 - 0, 0 - 1) = (1, -1), γ = 1: w = 2 e / (e + 1/e), 2 / e / (e + 1/e).
    e = math.e
    torch.testing.assert_close(weights, torch.tensor([2 * e / (e + 1 / e), 2 / e / (e + 1 / e)]))


def test_image_image_weights_two_captions_two_views_by_hand():
    # View-major rows: (view 0, caption 0), (view 0, caption 1), (view 1, caption 0), (view 1, caption 1).
    fg = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    bg = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])
    weights = image_image_weights(fg, bg, labels, gamma=2.0)
    # Caption 0's pair: cos fg = 1/√2, cos bg = 0 -> e^{√2}; caption 1's: cos fg = cos bg = 1 -> 1.
    # Mean over the 4 positive entries: (e^{√2} + 1) / 2.
    big = math.exp(math.sqrt(2))
    high, low = 2 * big / (big + 1), 2 / (big + 1)
    expected = torch.tensor([[0, 0, high, 0], [0, 0, 0, low], [high, 0, 0, 0], [0, low, 0, 0]])
    torch.testing.assert_close(weights, expected)


def test_image_image_weights_mask_and_mean_on_random_views():
    generator = torch.Generator().manual_seed(0)
    n_views, batch = 3, 4
    fg, bg = torch.randn(12, 6, generator=generator), torch.randn(12, 6, generator=generator)
    labels = torch.arange(n_views * batch) % batch
    weights = image_image_weights(fg, bg, labels, gamma=2.0)
    positive = (labels[:, None] == labels[None, :]) & ~torch.eye(12, dtype=torch.bool)
    assert torch.equal(weights != 0, positive) and torch.equal(weights.diagonal(), torch.zeros(12))
    assert float(weights[positive].mean()) == pytest.approx(1)
    raw = torch.tensor(
        [[math.exp(2 * (cosine(fg[i], fg[j]) - cosine(bg[i], bg[j]))) for j in range(12)] for i in range(12)]
    )
    torch.testing.assert_close(weights, raw * positive / raw[positive].mean())


def test_image_text_weights_two_captions_two_views_by_hand():
    labels = torch.tensor([0, 1, 0, 1])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    real_bg = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    view_bg = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    weights = image_text_weights(image, text, view_bg, real_bg, labels, gamma=2.0)
    # Own-caption alignment (1, 0, 0, 1) minus background similarity (1, 1/√2, 0, 1) = (0, -1/√2, 0, 0).
    small = math.exp(-math.sqrt(2))
    mean = (3 + small) / 4
    expected = torch.tensor([[1 / mean, 0], [0, small / mean], [1 / mean, 0], [0, 1 / mean]])
    torch.testing.assert_close(weights, expected)


def test_image_text_weights_only_own_caption_mean_one():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8) % 4
    image, text = torch.randn(8, 5, generator=generator), torch.randn(4, 5, generator=generator)
    view_bg, real_bg = torch.randn(8, 7, generator=generator), torch.randn(4, 7, generator=generator)
    weights = image_text_weights(image, text, view_bg, real_bg, labels, gamma=2.0)
    own = torch.nn.functional.one_hot(labels, 4).bool()
    assert torch.equal(weights != 0, own)
    raw = torch.tensor(
        [math.exp(2 * (cosine(image[i], text[labels[i]]) - cosine(view_bg[i], real_bg[labels[i]]))) for i in range(8)]
    )
    torch.testing.assert_close(weights[own], raw / raw.mean())
    assert float(weights[own].mean()) == pytest.approx(1)


def test_loss_coefficients_switch_at_the_boundary_epoch():
    early, later = [1, 0, 1, 0], [1, 1, 1, 1]
    assert loss_coefficients(15, early, later, 16) == (1.0, 0.0, 1.0, 0.0)
    assert loss_coefficients(16, early, later, 16) == (1.0, 1.0, 1.0, 1.0)
    assert loss_coefficients(24, early, later, 16) == (1.0, 1.0, 1.0, 1.0)
    assert loss_coefficients(0, early, later, 0) == (1.0, 1.0, 1.0, 1.0)


# --- tiny encoder and scorer --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quality_encoder(tmp_path_factory):
    folder = build_tiny_quality_encoder(tmp_path_factory.mktemp("models") / "quality_encoder")
    return {"model": f"local-dir:{folder}", "pretrained": None}


@pytest.fixture(scope="module")
def random_vector_npz(tmp_path_factory):
    vector = np.random.default_rng(0).standard_normal(320).astype(np.float32)
    path = tmp_path_factory.mktemp("fit") / "quality_pca.npz"
    np.savez(path, vector=vector / np.linalg.norm(vector))
    return path


@pytest.fixture(scope="module")
def scorer(quality_encoder, random_vector_npz):
    return QualityScorer(quality_encoder, random_vector_npz)


def images01(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_trunk_features_and_head_equal_encode_image(quality_encoder):
    model, _ = load_open_clip(quality_encoder, role="quality_encoder")
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        token_map, embedding = token_map_and_embedding(model, images)
        assert token_map.shape == (3, 2, 2, 320) and embedding.shape == (3, 32)
        assert torch.equal(embedding, model.encode_image(images))
        # Stage 4's map before the head's pooling and norm.
        stage4 = model.visual.trunk.stages(model.visual.trunk.stem(images))
        assert torch.equal(token_map, stage4.permute(0, 2, 3, 1))


def test_vit_towers_give_patch_tokens_and_encode_image(tmp_path):
    folder = build_tiny_open_clip(tmp_path / "vit")
    model, _ = load_open_clip({"model": f"local-dir:{folder}"})
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        token_map, embedding = token_map_and_embedding(model, images)
        assert torch.equal(token_map.flatten(1, 2), patch_tokens(model, images))
        assert torch.equal(embedding, model.encode_image(images))


def test_tiny_quality_encoder_is_deterministic(quality_encoder, tmp_path):
    folder = build_tiny_quality_encoder(tmp_path / "again")
    original = Path(quality_encoder["model"].removeprefix("local-dir:"))
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        assert (folder / name).read_bytes() == (original / name).read_bytes()


def test_scorer_outputs_are_detached_finite_float32(scorer):
    view1, view2 = images01(5, 3, 48, 48, seed=1), images01(5, 3, 80, 80, seed=2)
    weights = scorer.two_view_weights(view1, view2)
    assert weights.shape == (5,) and weights.dtype == torch.float32 and not weights.requires_grad
    assert torch.isfinite(weights).all() and float(weights.mean()) == pytest.approx(1)
    # The same as the pure formula on the features of each view.
    fg1, bg1 = scorer.foreground_background(view1)
    fg2, bg2 = scorer.foreground_background(view2)
    torch.testing.assert_close(weights, genview_weights(fg1, bg1, fg2, bg2, 1.0), rtol=1e-4, atol=1e-5)

    # Plain no_grad tensors, not inference tensors: they can weight a loss that is back-propagated.
    loss = torch.ones(5, requires_grad=True)
    (weights * loss).mean().backward()
    torch.testing.assert_close(loss.grad, weights / 5)


def test_scorer_pairwise_weights(scorer):
    n_views, batch = 3, 2
    views, real = images01(n_views, batch, 3, 64, 64, seed=3), images01(batch, 3, 70, 50, seed=4)
    captions = ["a red circle", "a blue striped square in the top left"]
    image_image, image_text = scorer.pairwise_weights(views, real, captions, gamma_ii=2.0, gamma_it=2.0)
    assert image_image.shape == (6, 6) and image_text.shape == (6, 2)
    for weights in (image_image, image_text):
        assert weights.dtype == torch.float32 and not weights.requires_grad and torch.isfinite(weights).all()

    labels = torch.arange(6) % batch
    fg, bg = scorer.foreground_background(views.flatten(0, 1))
    _, real_bg = scorer.foreground_background(real)
    _, embedding = scorer.features(views.flatten(0, 1))
    text = scorer.text_embedding(captions)
    torch.testing.assert_close(image_image, image_image_weights(fg, bg, labels, 2.0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        image_text, image_text_weights(embedding, text, bg, real_bg, labels, 2.0), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="at least 2 views"):
        scorer.pairwise_weights(views[:1], real, captions)


def test_clip_and_imagenet_normalisation_differ(scorer, quality_encoder):
    images = images01(2, 3, 64, 64, seed=5)
    clip = scorer.features(images)[1]  # CLIP statistics are the default
    imagenet = QualityEncoder(quality_encoder, normalization="imagenet").features(images)[1]
    assert not torch.allclose(clip, imagenet)
    with pytest.raises(ConfigError, match="clip, imagenet"):
        QualityEncoder(quality_encoder, normalization="openai")


def test_scorer_rejects_a_vector_of_another_encoder(quality_encoder, tmp_path):
    np.savez(tmp_path / "wrong.npz", vector=np.ones(64, dtype=np.float32))
    with pytest.raises(BadInputError, match="64-d tokens.*320-d"):
        QualityScorer(quality_encoder, tmp_path / "wrong.npz").foreground_background(images01(1, 3, 64, 64))
    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    with pytest.raises(BadInputError, match="not a quality-vector fit"):
        load_quality_vector(tmp_path / "broken.npz")


# --- fit ----------------------------------------------------------------------------------------------------


@pytest.fixture
def shapes_manifest(tmp_path, monkeypatch):
    from helpers import indexed_shapes

    from genview.data.shapes import SHAPE_CLASSES

    monkeypatch.chdir(tmp_path)
    indexed_shapes(tmp_path, train_per_class=2)
    return "manifest.csv", len(SHAPE_CLASSES)


def test_fit_quality_vector_on_shapes(shapes_manifest, quality_encoder):
    manifest_csv, n_classes = shapes_manifest
    fit = fit_quality_vector(manifest_csv, quality_encoder, "a/quality_pca.npz", per_class=2, batch_size=8)
    with np.load("a/quality_pca.npz") as saved:
        assert set(saved.files) == {"vector", "sign", "sample_ids", "grid", "encoder_stamp"}
        assert saved["vector"].dtype == np.float32 and saved["vector"].shape == (320,)
        assert np.linalg.norm(saved["vector"]) == pytest.approx(1, abs=1e-5)
        assert int(saved["sign"]) in (1, -1) and saved["grid"].tolist() == [2, 2]
        assert len(saved["sample_ids"]) == 2 * n_classes
        assert np.array_equal(saved["vector"], fit["vector"])

    # The stored vector is the recorded sign times the un-signed PC-1.
    unsigned = fit_quality_vector(manifest_csv, quality_encoder, "a/plus.npz", per_class=2, batch_size=8, sign=1)
    np.testing.assert_array_equal(fit["vector"], int(fit["sign"]) * unsigned["vector"])
    assert QualityScorer(quality_encoder, "a/quality_pca.npz").vector.shape == (320,)
    # The fit is used only with the encoder it was made with.
    with pytest.raises(BadInputError, match="was fitted with another models.quality_encoder"):
        QualityScorer({**quality_encoder, "image_size": 32}, "a/quality_pca.npz")


def _grouped_weights_worker(rank: int, init_file: str, encoder: dict, vector_npz: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        view1, view2 = images01(8, 3, 32, 32, seed=1), images01(8, 3, 32, 32, seed=2)
        local = slice(rank * 4, (rank + 1) * 4)
        weights = QualityScorer(encoder, vector_npz).two_view_weights(view1[local], view2[local], 1.0, group_size=8)
        torch.save(weights, f"{out_dir}/rank{rank}.pt")
        torch.distributed.barrier()  # gloo aborts a process whose peer leaves first
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_genview_softmax_group_spans_processes(scorer, quality_encoder, random_vector_npz, tmp_path):
    """A group of 8 over 2 processes of 4 is the softmax over all 8, each process keeping its own rows: the weights
    do not change with the number of GPUs. group_size None is the official per-process softmax."""
    import torch.multiprocessing as mp

    from genview.quality.weights import grouped_weights, pair_quality

    args = (str(tmp_path / "init"), quality_encoder, str(random_vector_npz), str(tmp_path))
    mp.spawn(_grouped_weights_worker, args=args, nprocs=2)
    view1, view2 = images01(8, 3, 32, 32, seed=1), images01(8, 3, 32, 32, seed=2)
    fg1, bg1 = scorer.foreground_background(view1)
    fg2, bg2 = scorer.foreground_background(view2)
    quality = pair_quality(fg1, bg1, fg2, bg2)
    expected = 8 * torch.softmax(quality, 0)
    spread = torch.cat([torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)])
    torch.testing.assert_close(spread, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scorer.two_view_weights(view1, view2, 1.0, group_size=8), expected, rtol=1e-4, atol=1e-5)
    per_process = scorer.two_view_weights(view1[:4], view2[:4])
    torch.testing.assert_close(per_process, grouped_weights(quality[:4], 4), rtol=1e-4, atol=1e-5)
