"""Evaluation metrics and protocols as pure functions on tensors and arrays (docs/method.md §5).

- ``topk_accuracy``: top-k accuracy of class scores, in percent.
- ``knn_scores`` / ``knn_accuracy``: the temperature-weighted cosine kNN of InstDisc and DINO.
- ``logistic_regression_probe``: the fast linear protocol (ours) on cached features, with a sweep of the
  regularisation strength on a held-out part of the training split.
- ``retrieval_recall``: image→text and text→image recall at k.
- ``zero_shot_weights`` / ``zero_shot_scores``: CLIP's prompt-ensembled zero-shot classifier.
- ``balanced_subset`` / ``subset_from_ids``: the labelled subsets of semi-supervised learning.

The paper's linear protocol (ten heads trained at once on a frozen backbone) is in
:mod:`genview.evaluation.heads`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from genview.errors import BadInputError
from genview.runtime.progress import progress

# The regularisation sweep of the fast linear probe: inverse L2 strengths one decade apart.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 3, 7))


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share (%) of rows of ``scores`` (N, C) whose label is among their k highest scores, keyed ``top{k}``.

    k is capped at C, so "top5" of a 3-class problem is its top-3 (100 %).
    """
    labels = torch.as_tensor(labels, device=scores.device)
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"top{k}": 100.0 * hits[:, :k].any(1).float().mean().item() for k in ks}


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    k: int,
    num_classes: int,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores (N, C) of the weighted kNN: each test row's k most cosine-similar training rows vote for
    their class with weight exp(similarity / temperature).

    Test rows are processed ``chunk`` at a time so that only a (chunk, M) similarity matrix is ever held;
    k is capped at M.
    """
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1).to(train.device)
    train_labels = torch.as_tensor(train_labels, device=train.device).long()
    k = min(k, train.shape[0])
    scores = []
    for start in range(0, test.shape[0], chunk):
        similarities, neighbours = (test[start : start + chunk] @ train.T).topk(k, dim=1)
        votes = torch.zeros(similarities.shape[0], num_classes, device=train.device)
        votes.scatter_add_(1, train_labels[neighbours], (similarities / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int,
    ks: Sequence[int] = (20, 200),
    temperature: float = 0.07,
    chunk: int = 1024,
) -> dict[str, dict[str, float]]:
    """Top-1/top-5 accuracy (%) of the weighted kNN for each k, keyed ``k{k}`` by the requested k (a k above
    the number of training rows uses them all)."""
    return {
        f"k{k}": topk_accuracy(
            knn_scores(
                train_features,
                train_labels,
                test_features,
                k=k,
                num_classes=num_classes,
                temperature=temperature,
                chunk=chunk,
            ),
            test_labels,
        )
        for k in ks
    }


def logistic_regression_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    cs: Sequence[float] = DEFAULT_CS,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_iter: int = 1000,
) -> dict:
    """The fast linear protocol: standardised features, multinomial logistic regression, C chosen on a
    held-out ``val_fraction`` of the training split (ties go to the smaller C, the stronger regularisation),
    then refit on the whole training split and scored on the test split.

    Returns ``top1`` (test, %), ``best_c`` and ``val_top1_by_c`` (validation top-1 % for each C).
    """
    # sklearn takes a second to import: only the jobs that run this probe pay for it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    fit_x, val_x, fit_y, val_y = train_test_split(
        train_x,
        train_y,
        test_size=_validation_size(train_y, val_fraction),
        random_state=seed,
        stratify=train_y if _can_stratify(train_y, val_fraction) else None,
    )

    def probe(c: float):
        # The scaler sits in the pipeline so it is fitted on exactly the rows the classifier is fitted on.
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))

    val_top1_by_c = {}
    # A fit on a large feature set takes minutes: one step per C, and one for the refit.
    with progress(desc="linear_fast C sweep", total=len(cs) + 1, unit="fit") as bar:
        for c in sorted(float(c) for c in cs):
            val_top1_by_c[c] = 100.0 * probe(c).fit(fit_x, fit_y).score(val_x, val_y)
            bar.set_postfix(C=c, val_top1=val_top1_by_c[c], refresh=False)
            bar.update()
        best_c = max(val_top1_by_c, key=lambda c: (val_top1_by_c[c], -c))
        top1 = 100.0 * probe(best_c).fit(train_x, train_y).score(np.asarray(test_x), np.asarray(test_y))
        bar.set_postfix(best_C=best_c, top1=top1, refresh=False)
        bar.update()
    return {"top1": top1, "best_c": best_c, "val_top1_by_c": val_top1_by_c}


def _validation_size(labels: np.ndarray, val_fraction: float) -> int:
    """Rows held out for validation: ``val_fraction`` of them, rounded up as sklearn does, at least one."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    return max(1, int(np.ceil(val_fraction * len(labels))))


def _can_stratify(labels: np.ndarray, val_fraction: float) -> bool:
    """Whether a stratified split is possible: every class has two rows, and both parts can hold every class
    (sklearn refuses a stratified split otherwise)."""
    classes, counts = np.unique(labels, return_counts=True)
    n_val = _validation_size(labels, val_fraction)
    return counts.min() >= 2 and min(n_val, len(labels) - n_val) >= len(classes)


def retrieval_recall(
    image_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    text_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall at k (%) of cosine retrieval, keyed ``image_to_text_R@k`` and ``text_to_image_R@k``.

    ``text_image`` (T,) is the index of each caption's image. An image is retrieved correctly at k when any of
    its captions is among its k most similar texts; a caption when its image is among its k most similar
    images. k is capped at the number of candidates.
    """
    images = F.normalize(image_embeddings.float(), dim=1)
    texts = F.normalize(text_embeddings.float(), dim=1).to(images.device)
    text_image = torch.as_tensor(text_image, device=images.device).long()
    similarities = images @ texts.T  # (I, T)

    nearest_texts = similarities.topk(min(max(ks), texts.shape[0]), dim=1).indices
    image_hits = text_image[nearest_texts] == torch.arange(images.shape[0], device=images.device)[:, None]
    nearest_images = similarities.T.topk(min(max(ks), images.shape[0]), dim=1).indices
    text_hits = nearest_images == text_image[:, None]

    recalls = {}
    for k in ks:
        recalls[f"image_to_text_R@{k}"] = 100.0 * image_hits[:, :k].any(1).float().mean().item()
    for k in ks:
        recalls[f"text_to_image_R@{k}"] = 100.0 * text_hits[:, :k].any(1).float().mean().item()
    return recalls


def zero_shot_weights(
    class_names: Sequence[str],
    templates: Sequence[str | Callable[[str], str]],
    encode_text: Callable[[list[str]], torch.Tensor],
) -> torch.Tensor:
    """Zero-shot classifier weights (C, E): per class, the mean of the L2-normalised embeddings of its
    prompts, normalised again (CLIP's prompt ensembling).

    A template is a string with a ``{}`` or ``{c}`` placeholder (both conventions of clip_benchmark and
    open_clip) or a callable of the class name (open_clip's ImageNet templates).
    """
    weights = []
    with torch.no_grad():
        for name in class_names:
            prompts = [t(name) if callable(t) else t.format(name, c=name) for t in templates]
            embeddings = F.normalize(encode_text(prompts).float(), dim=-1)
            weights.append(F.normalize(embeddings.mean(0), dim=-1))
    return torch.stack(weights)


def zero_shot_scores(image_embeddings: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class scores (N, C): cosine similarities of the images to the (normalised) zero-shot weights."""
    return F.normalize(image_embeddings.float(), dim=-1) @ weights.to(image_embeddings.device).T


def balanced_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a seeded class-balanced subset: from each class, ``fraction`` of its rows (rounded
    half up, at least one), drawn without replacement."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        chosen.append(rng.choice(rows, size=max(1, int(fraction * len(rows) + 0.5)), replace=False))
    return np.sort(np.concatenate(chosen))


def subset_from_ids(all_ids: Sequence[str], wanted_ids: Sequence[str]) -> np.ndarray:
    """Sorted indices into ``all_ids`` of ``wanted_ids`` (e.g. the official ImageNet 1 % / 10 % lists)."""
    position = {}
    for index, image_id in enumerate(all_ids):
        if image_id in position:
            raise BadInputError(f"image id {image_id!r} occurs more than once in the dataset")
        position[image_id] = index
    missing = [image_id for image_id in wanted_ids if image_id not in position]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
        raise BadInputError(f"{len(missing)} of {len(wanted_ids)} wanted ids are not in the dataset: {shown}")
    return np.sort(np.array([position[image_id] for image_id in wanted_ids], dtype=np.int64))
