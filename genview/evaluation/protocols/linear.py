"""The paper's linear protocol: frozen backbone, ten linear heads trained at once (one per base lr) with SGD,
cosine schedule, RandomResizedCrop + flip on the training images; centre-crop test features; best top-1."""

import math

import torch

from genview.evaluation.heads import train_linear_heads
from genview.evaluation.pretrained import image_loader, train_transform
from genview.evaluation.protocols import Protocol, register


@register("linear")
class Linear(Protocol):
    def run(self, context) -> dict:
        cache, settings, model, device = context.features, context.settings, context.model, context.device
        train, test = settings["train_split"], settings["test_split"]
        paths, labels = cache.get(train, "paths"), cache.get(train, "labels")
        batch_size = min(settings["batch_size"], len(paths))
        transform = train_transform(context.experiment["recipe"]["image_size"])
        # The crops are drawn from the global generator (in the loader's workers, or here when num_workers is 0).
        torch.manual_seed(context.seed)

        @torch.no_grad()
        def train_batches(epoch: int):
            loader = image_loader(
                paths,
                labels,
                transform,
                batch_size=batch_size,
                num_workers=context.num_workers,
                shuffle=True,
                seed=context.seed + epoch,
                drop_last=settings["drop_last"],
            )
            for images, targets in loader:
                yield model.backbone(images.to(device)).float(), targets.to(device)

        def test_batches():
            features = torch.from_numpy(cache.get(test, "features")).to(device)
            targets = torch.from_numpy(cache.get(test, "labels")).to(device)
            for start in range(0, len(features), 1024):
                yield features[start : start + 1024], targets[start : start + 1024]

        result = train_linear_heads(
            train_batches,
            test_batches,
            feature_dim=cache.get(train, "features").shape[1],
            num_classes=len(cache.label_names),
            base_lrs=list(settings["base_lrs"]),
            batch_size=batch_size,
            epochs=settings["epochs"],
            steps_per_epoch=len(paths) // batch_size if settings["drop_last"] else math.ceil(len(paths) / batch_size),
            device=device,
            seed=context.seed,
            optimizer=settings["optimizer"],
            resume=context.resume("linear"),
        )
        result.pop("final_state_dict")  # the heads' weights; the result file keeps the numbers
        return result
