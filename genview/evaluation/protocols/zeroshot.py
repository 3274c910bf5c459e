"""Zero-shot classification (vision-language experiments): class names x prompt templates through the text tower."""

import torch

from genview.evaluation.catalog import zero_shot_templates
from genview.evaluation.metrics import topk_accuracy, zero_shot_scores, zero_shot_weights
from genview.evaluation.pretrained import encode_texts
from genview.evaluation.protocols import Protocol, register


@register("zeroshot")
class ZeroShot(Protocol):
    def run(self, context) -> dict:
        cache, model = context.features, context.model
        templates = zero_shot_templates(context.dataset, context.spec)
        weights = zero_shot_weights(
            cache.class_names, templates, lambda texts: encode_texts(model, texts, context.device)
        )
        splits = context.settings["splits"]
        embeddings = torch.cat([torch.from_numpy(cache.get(split, "image_embeddings")) for split in splits])
        labels = torch.cat([torch.from_numpy(cache.get(split, "labels")) for split in splits])
        scores = zero_shot_scores(embeddings, weights)
        metrics = topk_accuracy(scores, labels, ks=(1, 5))
        return {**metrics, "templates": len(templates), "classes": len(cache.class_names)}
