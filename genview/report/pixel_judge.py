"""A classifier that judges a view's class from its pixels alone (the embedded default's checks).

The shapes renderer records each view's class; the judge looks at the saved file instead. Where the two agree, the
view files, their manifest rows and the renderer's records line up, and the class a view shows is measured rather
than read back from the renderer. The judge is the embedded default's conv net trained with labels on the real
training split (flips and shifts as augmentation), and its accuracy on the real test split is reported beside it.

Views are saved as JPEG and the real images as PNG. A judge trained on the PNGs alone fell from 98.6 % on the test
split to 60 % on the same images saved at JPEG quality 95 and 21 % at 75 (at 32 px the compression reshapes small
objects), so it also trains on JPEG copies of the training images (JPEG_QUALITIES) and is tested on both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from genview.runtime.progress import progress

log = logging.getLogger(__name__)

#: JPEG qualities of the training images' copies the judge also learns from (the views' quality is 75 to 95).
JPEG_QUALITIES = (75, 95)


@dataclass
class PixelJudge:
    model: object  # torch module: backbone + linear head, in eval mode
    classes: list[str]
    image_size: int
    #: what the judge was trained with (:func:`train_pixel_judge`'s keyword arguments but the image size)
    settings: dict
    test_accuracy: float | None = None

    def predict(self, paths: list[str], batch_size: int = 256) -> list[str]:
        import torch

        indices = []
        with torch.no_grad():
            for start in range(0, len(paths), batch_size):
                images = load_images(paths[start : start + batch_size], self.image_size)
                indices += self.model(images).argmax(1).tolist()
        return [self.classes[i] for i in indices]


def load_images(paths: list[str], image_size: int, jpeg_quality: int | None = None):
    """Images as one float tensor (N, 3, image_size, image_size) in [0, 1], resized where they differ; with
    ``jpeg_quality``, as they are after a round trip through a JPEG file of that quality."""
    import io

    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from genview.data.images import load_rgb, to_tensor

    def read(path: str):
        image = load_rgb(path)
        if jpeg_quality is None:
            return image
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=jpeg_quality)
        return Image.open(buffer).convert("RGB")

    resize = v2.Resize((image_size, image_size), antialias=True)
    return torch.stack([resize(to_tensor(read(path))) for path in paths])


def _augment(images, generator):
    """Random horizontal flip and a shift of up to 2 pixels (the judge must not depend on exact placement)."""
    import torch

    flip = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
    return torch.roll(images, shifts=(dy, dx), dims=(-2, -1))


def train_pixel_judge(
    train_paths: list[str],
    train_labels: list[str],
    *,
    image_size: int,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 32,
    depth: int = 3,
    seed: int = 0,
) -> PixelJudge:
    """Train the judge on labelled images (a pure function of ``seed``)."""
    import torch
    import torch.nn.functional as F

    classes = sorted(set(train_labels))
    copies = (None, *JPEG_QUALITIES)
    targets = torch.tensor([classes.index(label) for label in train_labels] * len(copies))
    images = torch.cat([load_images(train_paths, image_size, quality) for quality in copies])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _judge_model(width, depth, len(classes))
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, len(images) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    model.train()
    with progress(range(epochs), desc="pixel judge", unit="epoch") as bar:
        for _ in bar:
            order = torch.randperm(len(images), generator=generator)
            for step in range(steps_per_epoch):
                batch = order[step * batch_size : (step + 1) * batch_size]
                loss = F.cross_entropy(model(_augment(images[batch], generator)), targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            bar.set_postfix(loss=float(loss.detach()), refresh=False)
    model.eval()
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "width": width, "depth": depth, "seed": seed}
    return PixelJudge(model, classes, image_size, settings)


def _judge_model(width: int, depth: int, num_classes: int):
    import torch

    from genview.training.backbones import build_backbone

    backbone, dim = build_backbone({"name": "convnet", "width": width, "depth": depth})
    return torch.nn.Sequential(backbone, torch.nn.Linear(dim, num_classes))


def save_pixel_judge(judge: PixelJudge, path) -> None:
    """The judge's weights, classes, image size, settings and test accuracy in one torch file (written atomically)."""
    import torch

    from genview.io import atomic_path

    record = {
        "weights": judge.model.state_dict(),
        "classes": judge.classes,
        "image_size": judge.image_size,
        "settings": judge.settings,
        "test_accuracy": judge.test_accuracy,
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def load_pixel_judge(path) -> PixelJudge:
    """The judge :func:`save_pixel_judge` wrote, in eval mode."""
    import torch

    record = torch.load(path, map_location="cpu", weights_only=True)
    settings = record["settings"]
    model = _judge_model(settings["width"], settings["depth"], len(record["classes"]))
    model.load_state_dict(record["weights"])
    model.eval()
    return PixelJudge(model, record["classes"], record["image_size"], settings, record["test_accuracy"])


def judge_accuracy(judge: PixelJudge, paths: list[str], labels: list[str], jpeg_quality: int | None = None) -> float:
    import torch

    with torch.no_grad():
        images = load_images(paths, judge.image_size, jpeg_quality)
        predicted = judge.model(images).argmax(1).numpy()
    return float(np.mean(np.array(judge.classes)[predicted] == np.array(labels)))
