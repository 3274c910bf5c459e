"""CLIP and SLIP (GenView++ vision-language methods): losses against plain re-computations, the coefficient
switch, training on a toy set, the tokenizer and text tower, and the global batch across two gloo ranks."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genview.errors import ConfigError
from genview.methods import build_method
from genview.methods.clip import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX
from genview.methods.text import VOCAB_SIZE, build_text_tower, tokenize
from genview.methods.vl_losses import (
    caption_labels,
    image_image_loss,
    image_text_loss,
    multi_positive_cross_entropy,
)
from genview.runtime.distributed import all_reduce_mean

IMAGE_SIZE = 16
FEATURE_DIM = 24
TINY_CLIP = {"embed_dim": 32, "text_width": 32, "text_heads": 2, "text_layers": 1, "context_length": 16}
TINY_SLIP = {**TINY_CLIP, "ssl_mlp_dim": 32, "ssl_emb_dim": 16}


def tiny_backbone(feature_dim=FEATURE_DIM):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, feature_dim))


def tiny_method(name, seed=0):
    torch.manual_seed(seed)
    return build_method(name, tiny_backbone(), FEATURE_DIM, TINY_SLIP if name == "slip" else TINY_CLIP)


def positive_weights(*shape, seed):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) + 0.5


# ---------------------------------------------------------------- plain re-computations (explicit loops)


def plain_multi_positive_cross_entropy(logits, positives_mask, weights=None):
    total = 0.0
    for i in range(logits.shape[0]):
        log_probs = logits[i] - torch.logsumexp(logits[i], dim=0)
        positives = [j for j in range(logits.shape[1]) if positives_mask[i, j]]
        row = sum((1.0 if weights is None else weights[i, j]) * log_probs[j] for j in positives)
        total -= row / len(positives) if positives else 0.0
    return total / logits.shape[0]


def plain_image_image_loss(features, n_views, batch_size, temperature, weights=None):
    """Row i: positives are the other views of caption i % B; candidates are every view but i itself."""
    features = F.normalize(features, dim=1)
    n_rows = n_views * batch_size
    total = 0.0
    for i in range(n_rows):
        others = [j for j in range(n_rows) if j != i]
        log_normaliser = torch.logsumexp(torch.stack([features[i] @ features[j] / temperature for j in others]), 0)
        positives = [j for j in others if j % batch_size == i % batch_size]
        row = sum(
            (1.0 if weights is None else weights[i, j]) * (features[i] @ features[j] / temperature - log_normaliser)
            for j in positives
        )
        total -= row / len(positives)
    return total / n_rows


def plain_image_text_loss(image_features, text_features, scale, weights=None):
    """Image row i: one positive, caption i % B. Caption k: positives are its V views v*B + k."""
    image_features = F.normalize(image_features, dim=1)
    text_features = F.normalize(text_features, dim=1)
    n_images, batch_size = image_features.shape[0], text_features.shape[0]
    image_to_text = 0.0
    for i in range(n_images):
        logits = torch.stack([scale * image_features[i] @ text_features[k] for k in range(batch_size)])
        weight = 1.0 if weights is None else weights[i, i % batch_size]
        image_to_text -= weight * (logits[i % batch_size] - torch.logsumexp(logits, 0))
    text_to_image = 0.0
    for k in range(batch_size):
        logits = torch.stack([scale * text_features[k] @ image_features[i] for i in range(n_images)])
        positives = [i for i in range(n_images) if i % batch_size == k]
        row = sum(
            (1.0 if weights is None else weights[i, k]) * (logits[i] - torch.logsumexp(logits, 0)) for i in positives
        )
        text_to_image -= row / len(positives)
    return (image_to_text / n_images + text_to_image / batch_size) / 2


# ---------------------------------------------------------------- losses


def test_multi_positive_cross_entropy_matches_plain_loops():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=generator)
    mask = torch.rand(5, 7, generator=generator) > 0.5
    mask[0] = False  # a row without positives contributes 0 and still counts in the mean
    weights = positive_weights(5, 7, seed=1)
    for w in (None, weights):
        expected = plain_multi_positive_cross_entropy(logits, mask, w)
        torch.testing.assert_close(multi_positive_cross_entropy(logits, mask, w), expected)
    assert torch.equal(
        multi_positive_cross_entropy(logits, mask, torch.ones(5, 7)),
        multi_positive_cross_entropy(logits, mask),
    )


def test_caption_labels_are_view_major():
    assert caption_labels(3, 4).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]


@pytest.mark.parametrize("weighted", [False, True])
def test_image_image_loss_matches_plain_loops_with_three_views(weighted):
    n_views, batch_size = 3, 4
    features = torch.randn(n_views * batch_size, 6, generator=torch.Generator().manual_seed(2))
    weights = positive_weights(12, 12, seed=3) if weighted else None
    loss = image_image_loss(features, caption_labels(n_views, batch_size), 0.1, weights)
    torch.testing.assert_close(loss, plain_image_image_loss(features, n_views, batch_size, 0.1, weights))


def test_image_image_loss_excludes_self_similarity():
    # Two identical views per caption: without the diagonal mask a view would be its own perfect match.
    base = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    features = torch.cat([base, base])
    loss = image_image_loss(features, caption_labels(2, 4), 0.5)
    torch.testing.assert_close(loss, plain_image_image_loss(features, 2, 4, 0.5))


def test_image_image_weights_of_ones_give_the_unweighted_loss_exactly():
    features = torch.randn(12, 6, generator=torch.Generator().manual_seed(5))
    labels = caption_labels(3, 4)
    assert torch.equal(
        image_image_loss(features, labels, 0.1, torch.ones(12, 12)), image_image_loss(features, labels, 0.1)
    )


def test_image_image_zero_weight_removes_that_pair_only():
    n_views, batch_size, temperature = 3, 4, 0.1
    features = torch.randn(12, 6, generator=torch.Generator().manual_seed(6))
    weights = torch.ones(12, 12)
    weights[1, 5] = 0.0  # row 1 (caption 1, view 0) against its positive 5 (caption 1, view 1)
    loss = image_image_loss(features, caption_labels(n_views, batch_size), temperature, weights)
    # The pair's term was -(1/2 positives) * log p_15 in row 1, averaged over 12 rows; the rest is unchanged.
    normalised = F.normalize(features, dim=1)
    row_logits = (normalised[1] @ normalised.T / temperature).clone()
    row_logits[1] = -float("inf")
    log_p_15 = row_logits[5] - torch.logsumexp(row_logits, 0)
    unweighted = image_image_loss(features, caption_labels(n_views, batch_size), temperature)
    torch.testing.assert_close(loss, unweighted + log_p_15 / 2 / 12)
    torch.testing.assert_close(loss, plain_image_image_loss(features, n_views, batch_size, temperature, weights))


@pytest.mark.parametrize("weighted", [False, True])
def test_image_text_loss_matches_plain_loops_with_three_views(weighted):
    generator = torch.Generator().manual_seed(7)
    images, texts = torch.randn(12, 5, generator=generator), torch.randn(4, 5, generator=generator)
    weights = positive_weights(12, 4, seed=8) if weighted else None
    loss = image_text_loss(images, texts, 10.0, weights)
    torch.testing.assert_close(loss, plain_image_text_loss(images, texts, 10.0, weights))


def test_image_text_weights_of_ones_and_zeros():
    generator = torch.Generator().manual_seed(9)
    images, texts = torch.randn(8, 5, generator=generator), torch.randn(4, 5, generator=generator)
    assert torch.equal(image_text_loss(images, texts, 5.0, torch.ones(8, 4)), image_text_loss(images, texts, 5.0))
    # View 1 of caption 2 leaves both directions: its image row and its share of caption 2's text row.
    weights = torch.ones(8, 4)
    weights[6, 2] = 0.0
    torch.testing.assert_close(
        image_text_loss(images, texts, 5.0, weights), plain_image_text_loss(images, texts, 5.0, weights)
    )


def test_image_text_loss_with_one_view_is_the_symmetric_clip_loss():
    generator = torch.Generator().manual_seed(10)
    images, texts = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    logits = 20.0 * F.normalize(images, dim=1) @ F.normalize(texts, dim=1).T
    targets = torch.arange(6)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    torch.testing.assert_close(image_text_loss(images, texts, 20.0), expected)


def test_loss_weights_of_the_wrong_shape_are_rejected():
    features = torch.randn(8, 5)
    with pytest.raises(ValueError, match="image weights"):
        image_image_loss(features, caption_labels(2, 4), 0.1, torch.ones(8, 4))
    with pytest.raises(ValueError, match="text weights"):
        image_text_loss(features, torch.randn(4, 5), 1.0, torch.ones(8, 8))


# ---------------------------------------------------------------- methods


def test_default_options_are_the_official_ones():
    clip, slip = tiny_method("clip"), tiny_method("slip")
    official_clip = {
        "embed_dim": 512,
        "text_width": 512,
        "text_heads": 8,
        "text_layers": 12,
        "context_length": 77,
        "text_quick_gelu": True,
    }
    assert type(clip).default_options == official_clip
    assert type(slip).default_options == {
        **official_clip,
        "ssl_mlp_dim": 4096,
        "ssl_emb_dim": 256,
        "ssl_temperature": 0.1,
    }
    assert isinstance(slip, type(clip))
    assert clip.context_length == slip.context_length == 16
    assert slip.options["ssl_mlp_dim"] == 32 and slip.options["embed_dim"] == 32
    with pytest.raises(ConfigError, match="ssl_mlp_dim"):
        build_method("clip", tiny_backbone(), FEATURE_DIM, TINY_SLIP)


def method_inputs(n_views=2, batch_size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    views = torch.randn(n_views, batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    tokens = tokenize([f"a photo of thing {i}" for i in range(batch_size)], TINY_CLIP["context_length"])
    m = n_views * batch_size
    return (
        views,
        tokens,
        positive_weights(m, m, seed=seed + 1),
        positive_weights(m, batch_size, seed=seed + 2),
    )


def test_loss_is_the_coefficient_combination_of_the_terms():
    slip = tiny_method("slip").eval()  # BatchNorm running statistics: the same terms on every call
    views, tokens, image_weights, text_weights = method_inputs()
    reference = slip(views, tokens, coefficients=(1, 1, 1, 1), image_weights=image_weights, text_weights=text_weights)
    for coefficients in [(1, 0, 1, 0), (0, 0, 1, 0), (0.5, 2.0, 0.0, 3.0), (1, 1, 1, 1)]:
        out = slip(views, tokens, coefficients=coefficients, image_weights=image_weights, text_weights=text_weights)
        expected = sum(c * out[term] for c, term in zip(coefficients, ("ii", "ii_qd", "it", "it_qd")))
        torch.testing.assert_close(out["loss"], expected)
        for c, term in zip(coefficients, ("ii", "ii_qd", "it", "it_qd")):
            torch.testing.assert_close(out[term], reference[term] if c else torch.zeros(()))


def test_method_terms_are_the_loss_functions():
    slip = tiny_method("slip").eval()
    views, tokens, image_weights, text_weights = method_inputs(n_views=3)
    out = slip(views, tokens, coefficients=(1, 1, 1, 1), image_weights=image_weights, text_weights=text_weights)
    features = slip.backbone(views.flatten(0, 1))
    ssl = torch.cat([slip.image_mlp(view) for view in features.unflatten(0, (3, 4))])
    labels = caption_labels(3, 4)
    torch.testing.assert_close(out["ii"], image_image_loss(ssl, labels, 0.1))
    torch.testing.assert_close(out["ii_qd"], image_image_loss(ssl, labels, 0.1, image_weights))
    images, texts = slip.image_projection(features), slip.text_tower(tokens)
    scale = math.exp(LOGIT_SCALE_INIT)
    torch.testing.assert_close(out["it"], image_text_loss(images, texts, scale))
    torch.testing.assert_close(out["it_qd"], image_text_loss(images, texts, scale, text_weights))


def test_clip_rejects_image_image_coefficients_and_qd_terms_need_weights():
    clip, slip = tiny_method("clip"), tiny_method("slip")
    views, tokens, image_weights, text_weights = method_inputs()
    for coefficients in [(1, 0, 1, 0), (0, 1, 1, 0)]:
        with pytest.raises(ValueError, match="no image-image head"):
            clip(views, tokens, coefficients=coefficients, image_weights=image_weights)
    with pytest.raises(ValueError, match="text_weights"):
        clip(views, tokens, coefficients=(0, 0, 1, 1))
    with pytest.raises(ValueError, match="image_weights"):
        slip(views, tokens, coefficients=(1, 1, 1, 0))
    with pytest.raises(ValueError, match="2 views"):
        slip(views[:1], tokens, coefficients=(1, 0, 1, 0))
    with pytest.raises(ValueError, match="all four"):
        slip(views, tokens, coefficients=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="4 loss coefficients"):
        slip(views, tokens, coefficients=(1, 0, 1))
    out = clip(views, tokens, coefficients=(0, 0, 1, 1), text_weights=text_weights)
    assert out["ii"].item() == out["ii_qd"].item() == 0.0


def test_logit_scale_starts_at_one_over_007_and_is_clamped_by_forward():
    clip = tiny_method("clip")
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    views, tokens, _, _ = method_inputs()
    for outside, clamped in [(10.0, LOGIT_SCALE_MAX), (-1.0, 0.0)]:
        with torch.no_grad():
            clip.logit_scale.fill_(outside)
        out = clip(views, tokens, coefficients=(0, 0, 1, 0))
        assert clip.logit_scale.item() == pytest.approx(clamped)
        out["loss"].backward()
        assert clip.logit_scale.grad is not None  # the clamp is not in the graph: the bound still gets a gradient
        clip.zero_grad()


@pytest.mark.parametrize("name, coefficients", [("clip", (0, 0, 1, 0)), ("slip", (1, 0, 1, 0)), ("slip", (1, 1, 1, 1))])
def test_loss_goes_down_on_a_toy_set(name, coefficients):
    method = tiny_method(name, seed=0)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(32, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    colours, things = (
        ["red", "green", "blue", "yellow"],
        [
            "cat",
            "dog",
            "car",
            "boat",
            "tree",
            "house",
            "bird",
            "cup",
        ],
    )
    tokens = tokenize([f"a {c} {t}" for c in colours for t in things], TINY_CLIP["context_length"])
    image_weights, text_weights = positive_weights(64, 64, seed=2), positive_weights(64, 32, seed=3)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        views = images + 0.3 * torch.randn(2, *images.shape, generator=generator)  # V = 2 noisy views
        loss = method(views, tokens, coefficients=coefficients, image_weights=image_weights, text_weights=text_weights)
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        losses.append(loss["loss"].item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


# ---------------------------------------------------------------- text side


def test_tokenize_matches_open_clip():
    import open_clip

    tokens = tokenize(["a photo of a cat", "a dog"], 77)
    assert tokens.shape == (2, 77) and tokens.dtype == torch.long
    assert tokens[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not tokens[0, 7:].any()
    assert torch.equal(tokens, open_clip.get_tokenizer("ViT-B-32")(["a photo of a cat", "a dog"], context_length=77))
    long = tokenize([" ".join(["word"] * 40)], 8)
    assert long.shape == (1, 8) and long[0, 0] == 49406 and long[0, -1] == 49407  # cut, end-of-text kept


def test_text_tower_pools_at_end_of_text_under_a_causal_mask():
    from open_clip.tokenizer import SimpleTokenizer

    assert SimpleTokenizer().vocab_size == VOCAB_SIZE
    torch.manual_seed(0)
    tower = build_text_tower(width=32, heads=2, layers=2, context_length=16, embed_dim=8).eval()
    tokens = tokenize(["a photo of a cat", "a dog"], 16)
    features = tower(tokens)
    assert features.shape == (2, 8)
    # Ids after end-of-text (smaller than it, so pooling still finds it) cannot reach it under a causal mask.
    padded_differently = tokens.clone()
    padded_differently[0, 7:] = 1000
    torch.testing.assert_close(tower(padded_differently), features)
    changed_word = tokens.clone()
    changed_word[0, 5] = 1000
    assert not torch.allclose(tower(changed_word)[0], features[0])


# ---------------------------------------------------------------- two gloo ranks against one process

WORLD_SIZE, N_VIEWS, LOCAL_BATCH, INPUT_DIM, EMBED_DIM, TEMPERATURE, SCALE = 2, 2, 3, 7, 5, 0.2, 4.0


def distributed_case():
    """Per-rank inputs and local quality weights, the same in every process."""
    generator = torch.Generator().manual_seed(11)
    m = N_VIEWS * LOCAL_BATCH
    return {
        "images": torch.randn(WORLD_SIZE, N_VIEWS, LOCAL_BATCH, INPUT_DIM, generator=generator),
        "texts": torch.randn(WORLD_SIZE, LOCAL_BATCH, INPUT_DIM, generator=generator),
        "image_weights": torch.rand(WORLD_SIZE, m, m, generator=generator) + 0.5,
        "text_weights": torch.rand(WORLD_SIZE, m, LOCAL_BATCH, generator=generator) + 0.5,
    }


class TwoTowers(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(12)
        self.image = nn.Linear(INPUT_DIM, EMBED_DIM)
        self.text = nn.Linear(INPUT_DIM, EMBED_DIM)

    def forward(self, images, texts):
        return self.image(images), self.text(texts)


def distributed_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    case = distributed_case()
    images = case["images"][rank].flatten(0, 1)  # this rank's view-major rows
    results = {}

    image_tower = DistributedDataParallel(TwoTowers().image)
    features = image_tower(images)
    labels = caption_labels(N_VIEWS, LOCAL_BATCH)
    plain = image_image_loss(features, labels, TEMPERATURE)
    weighted = image_image_loss(features, labels, TEMPERATURE, case["image_weights"][rank])
    (plain + weighted).backward()
    results["ii"] = all_reduce_mean(plain.detach())
    results["ii_qd"] = all_reduce_mean(weighted.detach())
    results["ii_grad"] = image_tower.module.weight.grad

    towers = DistributedDataParallel(TwoTowers())
    image_features, text_features = towers(images, case["texts"][rank])
    plain = image_text_loss(image_features, text_features, SCALE)
    weighted = image_text_loss(image_features, text_features, SCALE, case["text_weights"][rank])
    (plain + weighted).backward()
    results["it"] = all_reduce_mean(plain.detach())
    results["it_qd"] = all_reduce_mean(weighted.detach())
    results["it_image_grad"] = towers.module.image.weight.grad
    results["it_text_grad"] = towers.module.text.weight.grad
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.barrier()  # gloo aborts a process whose peer leaves first
    dist.destroy_process_group()


def single_process_reference():
    """The same losses on the concatenated global batch in one process."""
    case = distributed_case()
    results = {}
    image_tower = TwoTowers().image
    features = image_tower(case["images"].flatten(0, 2))  # rank-major, view-major within a rank
    labels = torch.cat([caption_labels(N_VIEWS, LOCAL_BATCH) + r * LOCAL_BATCH for r in range(WORLD_SIZE)])
    plain = image_image_loss(features, labels, TEMPERATURE)
    weighted = image_image_loss(features, labels, TEMPERATURE, torch.block_diag(*case["image_weights"]))
    (plain + weighted).backward()
    results.update(ii=plain.detach(), ii_qd=weighted.detach(), ii_grad=image_tower.weight.grad)

    # image_text_loss reads captions from the row order: lay the images out view-major over global captions.
    towers = TwoTowers()
    image_features, text_features = towers(case["images"].transpose(0, 1).flatten(0, 2), case["texts"].flatten(0, 1))
    global_batch = WORLD_SIZE * LOCAL_BATCH
    text_weights = torch.zeros(N_VIEWS, global_batch, global_batch)
    for r, local in enumerate(case["text_weights"]):
        block = slice(r * LOCAL_BATCH, (r + 1) * LOCAL_BATCH)
        text_weights[:, block, block] = local.view(N_VIEWS, LOCAL_BATCH, LOCAL_BATCH)
    plain = image_text_loss(image_features, text_features, SCALE)
    weighted = image_text_loss(image_features, text_features, SCALE, text_weights.flatten(0, 1))
    (plain + weighted).backward()
    results.update(it=plain.detach(), it_qd=weighted.detach())
    results.update(it_image_grad=towers.image.weight.grad, it_text_grad=towers.text.weight.grad)
    return results


def test_two_ranks_match_one_process_on_the_global_batch(tmp_path):
    mp.spawn(distributed_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    expected = single_process_reference()
    for r in range(WORLD_SIZE):
        results = torch.load(tmp_path / f"rank{r}.pt")
        for key, value in expected.items():
            torch.testing.assert_close(results[key], value, msg=lambda m, key=key, r=r: f"rank {r}, {key}: {m}")


def test_losses_stay_in_float32_under_half_precision_autocast():
    """fp16 autocast must not overflow the -1e9 self-similarity mask or the logits (seen on a GPU)."""
    from genview.methods.vl_losses import image_image_loss, image_text_loss

    features = torch.randn(8, 16, dtype=torch.float16)
    labels = torch.arange(8) % 4
    with torch.autocast("cpu", dtype=torch.float16):
        ii = image_image_loss(features, labels, 0.1)
        it = image_text_loss(features, features[:4], 100.0)
    assert ii.dtype == it.dtype == torch.float32 and torch.isfinite(ii) and torch.isfinite(it)
    assert torch.allclose(ii, image_image_loss(features.float(), labels, 0.1))
