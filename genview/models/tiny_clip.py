"""Training the tiny open_clip ViT of :func:`genview.models.open_clip_models.build_tiny_open_clip` on a manifest's
train split: the embedded default's foreground and quality encoder, written in the same ``local-dir:`` layout."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from genview.errors import GenviewError
from genview.models.open_clip_models import _write_tiny_clip, tiny_vit_cfg
from genview.runtime.progress import progress

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class _TrainSplit:
    """A manifest's train split in memory: images (N, 3, S, S) in [0, 1] and their captions; with token supervision
    also each patch's share inside the object mask (N, grid·grid) and each image's class index (N,) in ``classes``."""

    images: torch.Tensor
    captions: list[str]
    grid: int
    masks: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    classes: list[str] | None = None


def train_tiny_open_clip(
    out_dir: str | os.PathLike,
    manifest_csv: str | os.PathLike,
    *,
    image_size: int = 32,
    patch_size: int = 4,
    width: int = 64,
    layers: int = 2,
    heads: int = 2,
    embed_dim: int = 32,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    token_supervision: float = 1.0,
    seed: int = 0,
) -> Path:
    """Train the tiny open_clip ViT of :func:`~genview.models.open_clip_models.build_tiny_open_clip` as CLIP is
    trained (symmetric image-caption contrastive loss, learned temperature, AdamW) on the train split of a manifest,
    and save it in the same ``local-dir:`` layout: the embedded default's foreground and quality encoder, trained in
    seconds instead of the paper's LAION-trained CLIPs. Images get random flips; the run is a pure function of
    ``seed``.

    Large CLIP encoders learn from web data that object tokens differ from background ones, which is what the
    foreground analysis and the quality weights rely on; a tiny model trained for seconds does not. With
    ``token_supervision`` > 0 two linear heads on the patch tokens (dropped afterwards) are trained beside the CLIP
    loss with that weight, from the ground truth the train split has: whether a token is foreground (the mask) and,
    for foreground tokens, the image's class. The encoder then represents foreground and background the way the
    method expects, and the workflow's checks measure whether the analysis finds it."""
    split = _load_train_split(manifest_csv, image_size, patch_size, token_supervision)
    train = partial(
        _train,
        split=split,
        width=width,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        token_supervision=token_supervision,
        seed=seed,
    )
    vision_cfg = tiny_vit_cfg(image_size=image_size, patch_size=patch_size, width=width, layers=layers, heads=heads)
    return _write_tiny_clip(vision_cfg, embed_dim, image_size, seed, Path(out_dir), train=train)


def _load_train_split(
    manifest_csv: str | os.PathLike, image_size: int, patch_size: int, token_supervision: float
) -> _TrainSplit:
    """The manifest's train split resized to ``image_size``; with ``token_supervision``, its masks as the share of
    each ``patch_size`` patch inside the object, and its labels as indices into the sorted classes."""
    import torch
    from torchvision.transforms import v2

    from genview.contracts import MANIFEST
    from genview.data.images import load_rgb, to_tensor

    rows = MANIFEST.read(manifest_csv)
    rows = rows[rows["split"] == "train"].reset_index(drop=True)
    if rows.empty or not rows["caption"].str.len().any():
        raise GenviewError(f"{manifest_csv}: training the tiny CLIP needs train images with captions")
    if token_supervision and not (rows["mask"].str.len().all() and rows["label"].str.len().all()):
        raise GenviewError(f"{manifest_csv}: token supervision needs a mask and a label for every train image")
    resize = v2.Resize((image_size, image_size), antialias=True)
    images = torch.stack([resize(to_tensor(load_rgb(path))) for path in rows["path"]])
    grid = image_size // patch_size
    captions = list(rows["caption"])
    if not token_supervision:
        return _TrainSplit(images, captions, grid)
    masks = torch.stack(
        [v2.functional.resize(to_tensor(load_rgb(path))[:1], [grid, grid], antialias=True) for path in rows["mask"]]
    ).flatten(1)
    classes = sorted(set(rows["label"]))
    labels = torch.tensor([classes.index(label) for label in rows["label"]])
    return _TrainSplit(images, captions, grid, masks=masks, labels=labels, classes=classes)


def _train(
    model,
    *,
    split: _TrainSplit,
    width: int,
    steps: int,
    batch_size: int,
    lr: float,
    token_supervision: float,
    seed: int,
) -> None:
    """Train ``model`` (a freshly seeded CLIP) in place for ``steps`` AdamW steps on random batches of ``split``;
    the token heads are created here and dropped afterwards."""
    import open_clip
    import torch

    from genview.data.images import CLIP_MEAN, CLIP_STD

    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the CLIP BPE, as the tiny text tower's config expects
    tokens = tokenizer(split.captions)
    foreground_head = torch.nn.Linear(width, 1)
    class_head = torch.nn.Linear(width, len(split.classes)) if token_supervision else None
    parameters = (
        list(model.parameters())
        + list(foreground_head.parameters())
        + (list(class_head.parameters()) if class_head else [])
    )
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.1)
    generator = torch.Generator().manual_seed(seed)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    model.train()
    with progress(range(steps), desc="tiny CLIP", unit="step") as bar:
        for _ in bar:
            batch = torch.randperm(len(split.images), generator=generator)[:batch_size]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            pixels = torch.where(flip.view(-1, 1, 1, 1), split.images[batch].flip(-1), split.images[batch])
            loss, patch = _clip_loss(model, (pixels - mean) / std, tokens[batch])
            if token_supervision:
                token_loss = _token_loss(patch, split, batch, flip, foreground_head, class_head)
                loss = loss + token_supervision * token_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.set_postfix(loss=float(loss.detach()), refresh=False)
    model.eval()


def _clip_loss(model, pixels, text_tokens):
    """CLIP's symmetric image-caption contrastive loss of a batch of normalised images and their tokenized
    captions, and the image tower's patch tokens (B, T, width), which the token heads read."""
    import torch
    import torch.nn.functional as F

    visual = model.visual
    visual.output_tokens = True
    pooled, patch = visual(pixels)
    visual.output_tokens = False
    image_features = F.normalize(pooled, dim=-1)
    text_features = F.normalize(model.encode_text(text_tokens), dim=-1)
    logits = model.logit_scale.exp() * image_features @ text_features.T
    targets = torch.arange(len(pixels))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2, patch


def _token_loss(patch, split: _TrainSplit, batch, flip, foreground_head, class_head):
    """The token heads' loss on a batch's patch tokens: foreground or not (over half the patch inside the mask,
    flipped with its image) for every token, plus the image's class for the foreground ones."""
    import torch
    import torch.nn.functional as F

    share = split.masks[batch].view(-1, split.grid, split.grid)
    share = torch.where(flip.view(-1, 1, 1), share.flip(-1), share).flatten(1)
    foreground = share > 0.5
    token_loss = F.binary_cross_entropy_with_logits(foreground_head(patch).squeeze(-1), foreground.float())
    if foreground.any():
        token_classes = split.labels[batch].view(-1, 1).expand_as(foreground)[foreground]
        token_loss = token_loss + F.cross_entropy(class_head(patch[foreground]), token_classes)
    return token_loss
