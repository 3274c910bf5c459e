"""The fast linear protocol (ours): logistic regression on cached centre-crop features, C swept on a held-out
part of the training split."""

from genview.evaluation.metrics import logistic_regression_probe
from genview.evaluation.protocols import Protocol, register


@register("linear_fast")
class LinearFast(Protocol):
    def run(self, context) -> dict:
        cache, settings = context.features, context.settings
        return logistic_regression_probe(
            cache.get("train", "features"),
            cache.get("train", "labels"),
            cache.get("test", "features"),
            cache.get("test", "labels"),
            cs=tuple(settings["cs"]),
            val_fraction=settings["val_fraction"],
            seed=context.seed,
            max_iter=settings["max_iter"],
        )
