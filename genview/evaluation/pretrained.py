"""A pre-training checkpoint loaded for evaluation, and images prepared the evaluation way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from genview.contracts import MANIFEST
from genview.data.images import load_rgb, to_tensor
from genview.errors import GenviewError
from genview.evaluation.checkpoints import read_checkpoint
from genview.training.network import build_model


def load_checkpoint(path: str | Path, device: str = "cpu"):
    """(method with its pre-trained weights, in eval mode; the resolved experiment it was trained from)."""
    checkpoint = read_checkpoint(path, device)
    model = build_model(checkpoint["experiment"])
    model.load_state_dict(checkpoint["method"])
    return model.to(device).eval(), checkpoint["experiment"]


def test_transform(image_size: int) -> v2.Compose:
    """Resize the short side to image_size * 256/224, then centre-crop image_size (the ImageNet test protocol)."""
    return v2.Compose([v2.Resize(round(image_size * 256 / 224), antialias=True), v2.CenterCrop(image_size)])


def train_transform(image_size: int) -> v2.Compose:
    """RandomResizedCrop + flip: the linear protocol's training augmentation."""
    return v2.Compose([v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()])


class ImageRows(Dataset):
    def __init__(self, paths: list[str], labels: np.ndarray, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(to_tensor(load_rgb(self.paths[index]))), int(self.labels[index])


def image_loader(
    paths,
    labels,
    transform,
    *,
    batch_size: int,
    num_workers: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ImageRows(list(paths), np.asarray(labels), transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        generator=generator,
        drop_last=drop_last,
    )


@torch.no_grad()
def encode_images(model, loader: DataLoader, device: str) -> dict[str, np.ndarray]:
    """Backbone features (what probes read) and, for vision-language models, projected image embeddings."""
    features, embeddings = [], []
    for images, _ in loader:
        feature = model.backbone(images.to(device))
        features.append(feature.float().cpu())
        if hasattr(model, "image_projection"):
            embeddings.append(model.image_projection(feature).float().cpu())
    out = {"features": torch.cat(features).numpy()}
    if embeddings:
        out["image_embeddings"] = torch.cat(embeddings).numpy()
    return out


@torch.no_grad()
def encode_texts(model, texts: list[str], device: str, batch_size: int = 256) -> torch.Tensor:
    if not hasattr(model, "text_tower"):
        raise GenviewError(f"{model.name} has no text tower: zero-shot and retrieval need a vision-language model")
    from genview.methods.text import tokenize

    parts = [
        model.text_tower(tokenize(texts[i : i + batch_size], model.context_length).to(device)).float().cpu()
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(parts)


def read_manifest(path: str | Path) -> pd.DataFrame:
    return MANIFEST.read(path)
