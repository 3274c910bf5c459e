"""Image-text retrieval (vision-language experiments): R@1/5/10 both ways on the test split, where each manifest
row is one (image, caption) pair and an image may have several captions (Karpathy splits: five)."""

import numpy as np
import torch

from genview.evaluation.metrics import retrieval_recall
from genview.evaluation.pretrained import encode_texts
from genview.evaluation.protocols import Protocol, register


@register("retrieval")
class Retrieval(Protocol):
    def run(self, context) -> dict:
        cache = context.features
        paths, captions = cache.get("test", "paths"), list(cache.get("test", "captions"))
        text_embeddings = encode_texts(context.model, captions, context.device)
        unique_paths, first_row, text_image = np.unique(paths, return_index=True, return_inverse=True)
        image_embeddings = torch.from_numpy(cache.get("test", "image_embeddings")[first_row])
        metrics = retrieval_recall(image_embeddings, text_embeddings, torch.from_numpy(text_image), ks=(1, 5, 10))
        return {**metrics, "images": len(unique_paths), "captions": len(captions)}
