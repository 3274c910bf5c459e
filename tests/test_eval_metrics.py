"""Evaluation metrics and protocols (docs/method.md §5) on constructed inputs whose answer is known:
top-k accuracy, weighted kNN, retrieval recall, zero-shot classification, the logistic-regression probe, the
paper's ten linear heads, and the semi-supervised subsets."""

import math

import numpy as np
import pytest
import torch

from genview.errors import BadInputError
from genview.evaluation.heads import LinearHeads, train_linear_heads
from genview.evaluation.metrics import (
    balanced_subset,
    knn_accuracy,
    knn_scores,
    logistic_regression_probe,
    retrieval_recall,
    subset_from_ids,
    topk_accuracy,
    zero_shot_scores,
    zero_shot_weights,
)


def gaussian_clusters(num_classes, per_class, dim, *, spread=10.0, noise=1.0, seed=0):
    """Well-separated clusters: class means ``spread`` × N(0, 1), samples ``noise`` × N(0, 1) around them."""
    generator = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(num_classes, dim, generator=generator)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return means[labels] + noise * torch.randn(len(labels), dim, generator=generator), labels, means


def hidden_direction_data(num_classes, per_class, *, noise=3.0, seed=0):
    """Features ``[code_y + n, n]`` with a large shared noise n: separable exactly along ``x[:C] − x[C:]``,
    but the class means differ only in the first half, so a classifier that only follows the mean difference
    (strong regularisation, or a few tiny gradient steps) stays far from 100 %."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    shared = noise * rng.standard_normal((len(labels), num_classes))
    features = np.concatenate([2 * np.eye(num_classes)[labels] + shared, shared], axis=1)
    return features.astype(np.float32), labels


# --- top-k accuracy -----------------------------------------------------------------------------------------


def test_topk_accuracy_by_hand():
    scores = torch.tensor(
        [
            [0.1, 0.5, 0.3, 0.0],  # label 1 is first
            [0.4, 0.1, 0.3, 0.2],  # label 2 is second
            [0.4, 0.3, 0.2, 0.1],  # label 3 is last
        ]
    )
    labels = torch.tensor([1, 2, 3])
    assert topk_accuracy(scores, labels, ks=(1, 2, 3)) == pytest.approx(
        {"top1": 100 / 3, "top2": 200 / 3, "top3": 200 / 3}
    )
    # k is capped at the number of classes: top-5 of 4 classes is everything.
    assert topk_accuracy(scores, labels) == pytest.approx({"top1": 100 / 3, "top5": 100.0})


# --- kNN ----------------------------------------------------------------------------------------------------


def test_knn_weighted_vote_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cosines to the test row: 1, 0, 1/√2
    train_labels = torch.tensor([0, 1, 1])
    test = torch.tensor([[2.0, 0.0]])  # the norm does not matter: similarities are cosines
    # k = 2: the first and third training rows vote.
    expected = torch.tensor([[math.exp(1.0), math.exp(1 / math.sqrt(2))]])
    torch.testing.assert_close(knn_scores(train, train_labels, test, k=2, num_classes=2, temperature=1.0), expected)
    # k = 3 adds exp(0) for class 1, which now outvotes class 0's single closest neighbour.
    expected = torch.tensor([[math.exp(1.0), math.exp(1 / math.sqrt(2)) + 1.0]])
    scores = knn_scores(train, train_labels, test, k=3, num_classes=2, temperature=1.0)
    torch.testing.assert_close(scores, expected)
    assert scores.argmax().item() == 1
    # k above the number of training rows uses them all; a temperature sharpens the weights.
    torch.testing.assert_close(knn_scores(train, train_labels, test, k=50, num_classes=2, temperature=1.0), expected)
    sharp = torch.tensor([[math.exp(1 / 0.5), math.exp(1 / math.sqrt(2) / 0.5) + 1.0]])
    torch.testing.assert_close(knn_scores(train, train_labels, test, k=3, num_classes=2, temperature=0.5), sharp)


def test_knn_chunks_give_the_same_scores():
    train, train_labels, _ = gaussian_clusters(4, 20, 8)
    test, _, _ = gaussian_clusters(4, 9, 8, seed=1)
    whole = knn_scores(train, train_labels, test, k=10, num_classes=4, chunk=1024)
    torch.testing.assert_close(knn_scores(train, train_labels, test, k=10, num_classes=4, chunk=7), whole)


def test_knn_on_separated_clusters_is_perfect():
    features, labels, means = gaussian_clusters(5, 60, 16)
    generator = torch.Generator().manual_seed(1)
    test_labels = torch.arange(5).repeat_interleave(20)
    test = means[test_labels] + torch.randn(len(test_labels), 16, generator=generator)
    result = knn_accuracy(features, labels, test, test_labels, num_classes=5)
    assert result == {"k20": {"top1": 100.0, "top5": 100.0}, "k200": {"top1": 100.0, "top5": 100.0}}


def test_knn_on_uninformative_labels_is_at_chance():
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(2000, 32, generator=generator), torch.randn(1000, 32, generator=generator)
    train_labels = torch.randint(10, (2000,), generator=generator)
    test_labels = torch.randint(10, (1000,), generator=generator)
    result = knn_accuracy(train, train_labels, test, test_labels, num_classes=10, ks=(20,))
    assert result["k20"]["top1"] == pytest.approx(10, abs=4)
    assert result["k20"]["top5"] == pytest.approx(50, abs=6)


# --- retrieval ----------------------------------------------------------------------------------------------


def test_retrieval_of_identical_embeddings_is_perfect():
    embeddings = torch.randn(20, 32, generator=torch.Generator().manual_seed(0))
    recalls = retrieval_recall(embeddings, embeddings.clone(), torch.arange(20))
    assert recalls == {f"{d}_R@{k}": 100.0 for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)}


def test_retrieval_ranks_are_as_constructed():
    # Images are the standard basis, so text t's similarity to image i is its (unit-norm) entry i. Entries
    # fall with the circular offset d = (i − t) mod n, and every row holds the same values, so text t ranks
    # images t, t+1, t+2, ... and image i ranks texts i, i−1, i−2, ...: with each text describing image t+2,
    # every pair is the other's third nearest.
    n = 8
    offsets = (torch.arange(n)[None, :] - torch.arange(n)[:, None]) % n
    texts = (n - offsets).float()
    text_image = (torch.arange(n) + 2) % n
    recalls = retrieval_recall(torch.eye(n), texts, text_image, ks=(1, 2, 3, 5))
    for direction in ("image_to_text", "text_to_image"):
        assert [recalls[f"{direction}_R@{k}"] for k in (1, 2, 3, 5)] == [0.0, 0.0, 100.0, 100.0]


def test_retrieval_with_several_captions_per_image():
    images = torch.eye(3)
    texts = torch.tensor(
        [
            [1.0, 0.0, 0.0],  # image 0's own caption
            [0.0, 0.8, 0.6],  # also image 0's, but nearest to image 1, then 2, then 0
            [0.0, 1.0, 0.0],  # image 1
            [0.0, 0.0, 1.0],  # image 2
        ]
    )
    recalls = retrieval_recall(images, texts, torch.tensor([0, 0, 1, 2]), ks=(1, 2, 3))
    # An image counts as found when any of its captions is found: every image's best caption is first.
    assert [recalls[f"image_to_text_R@{k}"] for k in (1, 2, 3)] == [100.0, 100.0, 100.0]
    # A caption counts on its own: the second caption finds its image only at rank 3.
    assert [recalls[f"text_to_image_R@{k}"] for k in (1, 2, 3)] == [75.0, 75.0, 100.0]

    # Five noisy captions per image, as in MSCOCO and Flickr30k.
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(10, 64, generator=generator)
    text_image = torch.arange(10).repeat_interleave(5)
    texts = images[text_image] + 0.1 * torch.randn(50, 64, generator=generator)
    recalls = retrieval_recall(images, texts, text_image)
    assert recalls["image_to_text_R@1"] == 100.0 and recalls["text_to_image_R@1"] == 100.0


# --- zero-shot ----------------------------------------------------------------------------------------------


def test_zero_shot_with_class_centroid_text_embeddings_is_perfect():
    class_names = ["alpha", "bravo", "charlie", "delta", "echo"]
    images, labels, centroids = gaussian_clusters(len(class_names), 20, 16, spread=5.0)
    templates = ["a photo of a {}.", "a drawing of the {c}", lambda c: f"{c}, in art"]
    prompts_seen = []
    template_shift = torch.randn(len(templates), 16, generator=torch.Generator().manual_seed(1))

    def encode_text(prompts):
        """Each prompt lands on its class's centroid, scaled and shifted a little by its template."""
        prompts_seen.extend(prompts)
        rows = []
        for template_index, prompt in enumerate(prompts):
            (name,) = [name for name in class_names if name in prompt]
            rows.append(3.0 * centroids[class_names.index(name)] + 0.1 * template_shift[template_index])
        return torch.stack(rows)

    weights = zero_shot_weights(class_names, templates, encode_text)
    assert weights.shape == (5, 16)
    torch.testing.assert_close(weights.norm(dim=1), torch.ones(5))
    assert {"a photo of a alpha.", "a drawing of the bravo", "echo, in art"} <= set(prompts_seen)
    assert len(prompts_seen) == len(class_names) * len(templates)
    scores = zero_shot_scores(images, weights)
    assert topk_accuracy(scores, labels) == {"top1": 100.0, "top5": 100.0}


def test_zero_shot_weights_average_normalised_embeddings():
    embeddings = {"x one": torch.tensor([3.0, 0.0]), "x two": torch.tensor([0.0, 0.5])}
    weights = zero_shot_weights(
        ["x"], ["{} one", "{c} two"], lambda prompts: torch.stack([embeddings[p] for p in prompts])
    )
    torch.testing.assert_close(weights, torch.tensor([[1.0, 1.0]]) / math.sqrt(2))
    torch.testing.assert_close(
        zero_shot_scores(torch.tensor([[2.0, 0.0]]), weights), torch.tensor([[1 / math.sqrt(2)]])
    )


# --- logistic-regression probe ------------------------------------------------------------------------------


def test_logistic_regression_probe_chooses_a_weaker_regularisation_when_the_strongest_underfits():
    train_x, train_y = hidden_direction_data(3, 100, seed=0)
    test_x, test_y = hidden_direction_data(3, 50, seed=1)
    result = logistic_regression_probe(train_x, train_y, test_x, test_y)
    smallest = min(result["val_top1_by_c"])
    assert result["best_c"] > smallest
    assert result["val_top1_by_c"][smallest] < 80 <= result["val_top1_by_c"][result["best_c"]]
    assert result["top1"] >= 98
    # Ties go to the smaller C: no C below the chosen one scores as well.
    best = result["val_top1_by_c"][result["best_c"]]
    assert all(score < best for c, score in result["val_top1_by_c"].items() if c < result["best_c"])
    assert logistic_regression_probe(train_x, train_y, test_x, test_y) == result


def test_logistic_regression_probe_without_a_stratified_split():
    # A class with one training row cannot be stratified: the hold-out falls back to a plain seeded split.
    train_x, train_y = hidden_direction_data(3, 20)
    train_x, train_y = train_x[:41], train_y[:41]
    result = logistic_regression_probe(train_x, train_y, train_x, train_y, cs=(0.1, 1.0))
    assert set(result["val_top1_by_c"]) == {0.1, 1.0}


# --- the paper's linear heads -------------------------------------------------------------------------------


def batches_of(features, labels, batch_size):
    features, labels = torch.as_tensor(features), torch.as_tensor(labels)

    def train_batches(epoch):
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield features[rows], labels[rows]

    return train_batches


def test_linear_heads_shapes_and_initialisation():
    heads = LinearHeads(32, 7, 3, use_bn=True)
    assert heads(torch.randn(5, 32)).shape == (3, 5, 7)
    for head in heads.heads:
        assert head.bias.abs().max() == 0 and 0.005 < head.weight.std() < 0.015
    assert not list(heads.norm.parameters())


def test_linear_heads_reach_full_accuracy_with_a_reasonable_lr():
    train_x, train_y = hidden_direction_data(4, 256, seed=0)
    test_x, test_y = hidden_direction_data(4, 64, seed=1)
    result = train_linear_heads(
        batches_of(train_x, train_y, 64),
        lambda: [(torch.as_tensor(test_x), torch.as_tensor(test_y))],
        feature_dim=8,
        num_classes=4,
        batch_size=64,
        epochs=2,
        steps_per_epoch=16,
        device="cpu",
    )
    assert result["top1"] >= 99
    assert result["best_lr"] > 0.001 and result["final_top1_by_head"][0] < 90
    assert len(result["final_top1_by_head"]) == 10 and result["epochs"] == 2
    assert max(result["final_top1_by_head"]) <= result["top1"]


@pytest.mark.parametrize("use_bn", [False, True])
def test_linear_heads_train_independently(use_bn):
    train_x, train_y = hidden_direction_data(4, 64, seed=0)

    def final_weights(base_lrs):
        result = train_linear_heads(
            batches_of(train_x, train_y, 32),
            lambda: [(torch.as_tensor(train_x), torch.as_tensor(train_y))],
            feature_dim=8,
            num_classes=4,
            base_lrs=base_lrs,
            batch_size=32,
            epochs=2,
            steps_per_epoch=8,
            device="cpu",
            use_bn=use_bn,
            seed=3,
        )
        return result["final_state_dict"]

    first, second = final_weights([0.001, 0.1, 0.5]), final_weights([0.3, 0.1, 0.002])
    # The shared lr at position 1 gives the same head whatever the other heads' lrs are ...
    for name in ("heads.1.weight", "heads.1.bias"):
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
    # ... while the heads whose lrs differ end apart.
    assert not torch.allclose(first["heads.0.weight"], second["heads.0.weight"])


# --- semi-supervised subsets --------------------------------------------------------------------------------


def test_balanced_subset_sizes_and_balance():
    labels = np.repeat([0, 1, 2], [100, 50, 30])
    np.random.default_rng(0).shuffle(labels)
    subset = balanced_subset(labels, 0.1, seed=0)
    assert np.array_equal(np.bincount(labels[subset]), [10, 5, 3])
    assert np.all(np.diff(subset) > 0)  # sorted, without repeats
    # At least one per class, rounded half up (0.5 → 1, 0.3 → 0 → 1).
    assert np.array_equal(np.bincount(labels[balanced_subset(labels, 0.01, seed=0)]), [1, 1, 1])
    assert np.array_equal(balanced_subset(labels, 0.1, seed=0), subset)
    assert not np.array_equal(balanced_subset(labels, 0.1, seed=1), subset)
    with pytest.raises(ValueError, match="fraction"):
        balanced_subset(labels, 0.0, seed=0)


def test_subset_from_ids():
    all_ids = ["n01_1.JPEG", "n01_2.JPEG", "n02_1.JPEG", "n02_2.JPEG"]
    assert subset_from_ids(all_ids, ["n02_1.JPEG", "n01_1.JPEG"]).tolist() == [0, 2]
    with pytest.raises(BadInputError, match="2 of 3 .*n03_1.JPEG, n04_9.JPEG"):
        subset_from_ids(all_ids, ["n03_1.JPEG", "n01_2.JPEG", "n04_9.JPEG"])
    with pytest.raises(BadInputError, match="n01_1.JPEG"):
        subset_from_ids(all_ids + ["n01_1.JPEG"], ["n01_1.JPEG"])
