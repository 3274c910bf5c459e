"""kNN on frozen features: cosine similarity, temperature-weighted votes (k = 20 and 200)."""

import torch

from genview.evaluation.metrics import knn_accuracy
from genview.evaluation.protocols import Protocol, register


@register("knn")
class KNN(Protocol):
    def run(self, context) -> dict:
        cache, settings = context.features, context.settings
        nested = knn_accuracy(
            torch.from_numpy(cache.get("train", "features")),
            torch.from_numpy(cache.get("train", "labels")),
            torch.from_numpy(cache.get("test", "features")),
            torch.from_numpy(cache.get("test", "labels")),
            ks=tuple(settings["ks"]),
            num_classes=len(cache.label_names),
            temperature=settings["temperature"],
        )
        # Flat names (top1_k20, top5_k200) are what result tables address.
        return {f"{metric}_{k}": value for k, values in nested.items() for metric, value in values.items()}
