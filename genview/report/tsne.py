"""The t-SNE triptych: features of the same few seeded-random classes for baseline, + views and GenView++."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from genview.errors import BadInputError
from genview.io import atomic_path
from genview.report.figures import new_figure, save_png


def choose_classes(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` class indices drawn without replacement by ``seed`` from those present, sorted."""
    present = np.unique(labels)
    if count > len(present):
        raise BadInputError(f"t-SNE asks for {count} classes, but the features have only {len(present)}")
    return np.sort(np.random.default_rng(seed).choice(present, size=count, replace=False))


def select_points(labels: np.ndarray, classes: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of at most ``per_class`` points of each chosen class (seeded), in index order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        if len(members) > per_class:
            members = np.sort(rng.choice(members, size=per_class, replace=False))
        chosen.append(members)
    return np.sort(np.concatenate(chosen))


def tsne_embedding(features: np.ndarray, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-d t-SNE of L2-normalised features (cosine geometry, as the evaluations use), PCA-initialised."""
    from sklearn.manifold import TSNE

    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    perplexity = min(perplexity, (len(unit) - 1) / 3)  # sklearn requires perplexity < n_samples
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(unit)


def _split_arrays(npz: str | os.PathLike, splits: list[str]):
    from genview.evaluation.features import FeatureCache

    cache = FeatureCache(npz)
    features = np.concatenate([cache.get(split, "features") for split in splits])
    labels = np.concatenate([cache.get(split, "labels") for split in splits])
    ids = np.concatenate([cache.get(split, "ids") for split in splits])
    return features, labels, ids, cache.label_names, cache.class_names


def tsne_figure(
    panels: list[tuple[str, str | os.PathLike]],
    out_png: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    splits: list[str],
    classes: int = 9,
    per_class: int = 100,
    seed: int = 0,
    perplexity: float = 30.0,
    title: str | None = None,
) -> pd.DataFrame:
    """One panel per (label, feature cache); the same classes and images in every panel.

    Each panel's title carries the silhouette score of the chosen classes in the feature space (cosine), so the
    separation the eye sees can be read as a number. Writes the figure and the 2-d points (CSV).
    """
    from sklearn.metrics import silhouette_score

    first_labels, first_ids = None, None
    figure, axes = new_figure(1, len(panels), (3.6, 3.6), title)
    rows = []
    for axis, (label, npz) in zip(axes[0], panels):
        features, labels, ids, label_names, class_names = _split_arrays(npz, splits)
        if first_labels is None:
            chosen = choose_classes(labels, classes, seed)
            points = select_points(labels, chosen, per_class, seed)
            first_labels, first_ids = labels, ids
        elif not np.array_equal(ids, first_ids):
            raise BadInputError(f"{npz}: its images differ from those of {panels[0][1]}; t-SNE panels must share them")
        coordinates = tsne_embedding(features[points], seed, perplexity)
        silhouette = silhouette_score(features[points], labels[points], metric="cosine")
        for index, class_index in enumerate(chosen):
            members = labels[points] == class_index
            axis.scatter(*coordinates[members].T, s=8, color=f"C{index}", label=class_names[class_index])
        axis.set_title(f"{label}\nsilhouette {silhouette:.3f}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        rows.append(
            pd.DataFrame(
                {
                    "panel": label,
                    "id": ids[points],
                    "label": np.asarray(label_names)[labels[points]],
                    "x": coordinates[:, 0],
                    "y": coordinates[:, 1],
                    "silhouette": silhouette,
                }
            )
        )
    handles, names = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncols=min(len(names), 5), fontsize=8, markerscale=2)
    save_png(figure, out_png)
    table = pd.concat(rows, ignore_index=True)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table
