"""Semi-supervised fine-tuning: the pre-trained backbone plus a linear head, fine-tuned end to end on 1 % and
10 % of the training labels (the official ImageNet lists when given, else seeded class-balanced subsets)."""

import copy
import logging
import math

import torch
from torch import nn

from genview.evaluation.metrics import balanced_subset, subset_from_ids, topk_accuracy
from genview.evaluation.pretrained import image_loader, test_transform, train_transform
from genview.evaluation.protocols import Protocol, register
from genview.runtime.progress import progress

log = logging.getLogger(__name__)


def _subset(cache, fraction: float, lists: dict, seed: int):
    ids, labels = cache.get("train", "ids"), cache.get("train", "labels")
    listed = lists.get(str(fraction))
    if listed:
        with open(listed) as handle:
            return subset_from_ids(ids, [line.strip() for line in handle if line.strip()])
    return balanced_subset(labels, fraction, seed)


@register("semisup")
class SemiSupervised(Protocol):
    def run(self, context) -> dict:
        cache, settings = context.features, context.settings
        paths, labels = cache.get("train", "paths"), cache.get("train", "labels")
        test_loader = image_loader(
            cache.get("test", "paths"),
            cache.get("test", "labels"),
            test_transform(context.experiment["recipe"]["image_size"]),
            batch_size=settings["batch_size"],
            num_workers=context.num_workers,
        )
        # One resume point for the whole protocol: finished fractions' metrics, and the current fraction's state
        # after its last finished epoch.
        resume = context.resume("semisup")
        state = resume.load() or {"fraction": 0, "epoch": 0, "metrics": {}}
        metrics = dict(state["metrics"])
        for fraction_index, fraction in enumerate(settings["fractions"]):
            if fraction_index < state["fraction"]:
                continue
            chosen = _subset(cache, fraction, settings["subset_lists"], context.seed)
            resumed = state if fraction_index == state["fraction"] and state["epoch"] else None
            backbone, head = _fine_tune(
                context, paths[chosen], labels[chosen], fraction_index, resume, resumed, metrics
            )
            metrics.update(_test_metrics(backbone, head, test_loader, context.device, fraction, len(chosen)))
            resume.save(dict(fraction=fraction_index + 1, epoch=0, metrics=metrics))
        resume.finish()
        return metrics


def _fine_tune(context, paths, labels, fraction_index: int, resume, resumed: dict | None, metrics: dict):
    """(backbone, head): a copy of the pre-trained backbone and a new linear head, fine-tuned end to end on the
    labelled images ``paths`` of fraction ``fraction_index`` with SGD and a cosine schedule per step, going on from
    ``resumed`` (the fraction's resume point) where given; after every epoch a resume point goes to ``resume``, with
    ``metrics`` (those of the finished fractions)."""
    settings, device = context.settings, context.device
    fraction = settings["fractions"][fraction_index]
    torch.manual_seed(context.seed)  # the head's initial weights and the crops come from the global generator
    backbone, head, optimizer = _backbone_head_and_optimizer(context)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    batch_size = min(settings["batch_size"], len(paths))
    steps, total, start_epoch = 0, settings["epochs"] * max(1, len(paths) // batch_size), 0
    if resumed:
        backbone.load_state_dict(resumed["backbone"])
        head.load_state_dict(resumed["head"])
        optimizer.load_state_dict(resumed["optimizer"])
        torch.set_rng_state(resumed["rng"])
        steps, start_epoch = resumed["steps"], resumed["epoch"]
    with progress(desc=f"semi-supervised {fraction:g}", total=total, initial=steps, unit="step") as bar:
        for epoch in range(start_epoch, settings["epochs"]):
            for images, targets in _train_loader(context, paths, labels, batch_size, epoch):
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * 0.5 * (1 + math.cos(math.pi * steps / total))
                loss = nn.functional.cross_entropy(head(backbone(images.to(device))), targets.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                bar.set_postfix(epoch=epoch + 1, loss=float(loss.detach()), refresh=False)
                bar.update()
            log.info(
                "semi-supervised %g: epoch %d/%d, last loss %.4f",
                fraction,
                epoch + 1,
                settings["epochs"],
                float(loss.detach()),
            )
            resume.save(
                dict(
                    fraction=fraction_index,
                    epoch=epoch + 1,
                    steps=steps,
                    backbone=backbone.state_dict(),
                    head=head.state_dict(),
                    optimizer=optimizer.state_dict(),
                    rng=torch.get_rng_state(),
                    metrics=metrics,
                )
            )
    return backbone, head


def _backbone_head_and_optimizer(context):
    """A trainable copy of the pre-trained backbone, a new linear head over the dataset's classes, and SGD over
    both, each with its own learning rate."""
    settings = context.settings
    backbone = copy.deepcopy(context.model.backbone).train()
    head = nn.Linear(context.model.feature_dim, len(context.features.label_names)).to(context.device)
    optimizer = torch.optim.SGD(
        [
            {"params": backbone.parameters(), "lr": settings["backbone_lr"]},
            {"params": head.parameters(), "lr": settings["head_lr"]},
        ],
        momentum=0.9,
        weight_decay=settings["weight_decay"],
    )
    return backbone, head, optimizer


def _train_loader(context, paths, labels, batch_size: int, epoch: int):
    """The epoch's training batches: random crops of the labelled images, shuffled with a seed per epoch, whole
    batches only."""
    return image_loader(
        paths,
        labels,
        train_transform(context.experiment["recipe"]["image_size"]),
        batch_size=batch_size,
        num_workers=context.num_workers,
        shuffle=True,
        seed=context.seed + epoch,
        drop_last=True,
    )


def _test_metrics(backbone, head, test_loader, device, fraction: float, labelled: int) -> dict:
    """Top-1 and top-5 (%) on the test images and the number of labelled images, keyed by the fraction."""
    backbone.eval()
    with torch.no_grad():
        scores, targets = zip(*[(head(backbone(x.to(device))).cpu(), y) for x, y in test_loader])
    accuracy = topk_accuracy(torch.cat(scores), torch.cat(targets), ks=(1, 5))
    percent = f"{fraction * 100:g}pct"
    return {
        f"top1_{percent}": float(accuracy["top1"]),
        f"top5_{percent}": float(accuracy["top5"]),
        f"labelled_{percent}": int(labelled),
    }
