"""The pre-training data: real images, generated views joined from the shard manifests, augmentations.

Every random choice for a sample (which slot takes the generated view, which view, every augmentation) is drawn
from a generator seeded by (seed, epoch, index), so an epoch's batches are a pure function of the experiment: a run
resumed mid-epoch sees exactly the batches the uninterrupted run saw, with any number of loader workers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from genview.contracts import VIEWS
from genview.data.images import load_rgb
from genview.errors import BadInputError

IMAGE_CACHE_BYTES = 256 << 20  # per loader process


def sample_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{epoch}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _blur(image_size: int, p: float):
    kernel = max(3, int(0.1 * image_size) // 2 * 2 + 1)  # SimCLR: 10% of the image side, odd
    return v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=p)


class DownSampleAndUpsample(torch.nn.Module):
    """GenView++'s resolution augmentation: with probability ``p``, resize the image to a side drawn from ``sizes``
    and back to its own size (a low-resolution copy at the original size). Draws from the global generator, like
    the torchvision transforms around it."""

    def __init__(self, p: float, sizes: list[int]):
        super().__init__()
        self.p, self.sizes = p, list(sizes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not self.sizes or float(torch.rand(())) >= self.p:
            return image
        side = self.sizes[int(torch.randint(len(self.sizes), ()))]
        height, width = image.shape[-2:]
        small = v2.functional.resize(image, [side, side], antialias=True)
        return v2.functional.resize(small, [height, width], antialias=True)


#: Handcrafted view recipes: colour jitter (brightness, contrast, saturation, hue) applied with p 0.8, blur and
#: solarize probabilities per view slot, and GenView++'s DownSampleAndUpsample probability.
AUGMENTATIONS = {
    "simclr": dict(jitter=(0.8, 0.8, 0.8, 0.2), blur=(0.5, 0.5), solarize=(0.0, 0.0), downsample=0.0),
    "mocov2": dict(jitter=(0.4, 0.4, 0.4, 0.1), blur=(0.5, 0.5), solarize=(0.0, 0.0), downsample=0.0),
    "byol": dict(jitter=(0.4, 0.4, 0.2, 0.1), blur=(1.0, 0.1), solarize=(0.0, 0.2), downsample=0.0),
    "genviewpp": dict(jitter=(0.4, 0.4, 0.4, 0.1), blur=(0.5, 0.5), solarize=(0.0, 0.0), downsample=0.05),
    # Crop, flip and grayscale only: for tiny images whose class is their shape, where jitter and blur at the
    # published strengths leave too little to learn from (the embedded default).
    "plain": dict(jitter=(0.0, 0.0, 0.0, 0.0), blur=(0.0, 0.0), solarize=(0.0, 0.0), downsample=0.0),
}
DOWNSAMPLE_SIZES = (64, 128)  # GenView++'s --down_res


def augmentation(
    preset: str,
    image_size: int,
    min_scale: float,
    slot: int = 0,
    *,
    max_scale: float = 1.0,
    downsample: dict | None = None,
) -> v2.Compose:
    """The handcrafted view pipeline of ``preset`` for view ``slot`` (BYOL's two slots differ), on [0, 1] tensors.

    ``downsample`` ({prob, sizes}, or None for the preset's probability at sizes 64 and 128) sets
    DownSampleAndUpsample, applied to the source image before cropping.
    """
    if preset not in AUGMENTATIONS:
        raise BadInputError(f"unknown augmentation preset {preset!r} (known: {', '.join(AUGMENTATIONS)})")
    recipe = AUGMENTATIONS[preset]
    downsample = downsample or {"prob": recipe["downsample"], "sizes": list(DOWNSAMPLE_SIZES)}
    steps = [DownSampleAndUpsample(downsample["prob"], downsample["sizes"])] if downsample["prob"] else []
    steps += [
        v2.RandomResizedCrop(image_size, scale=(min_scale, max_scale), antialias=True),
        v2.RandomHorizontalFlip(),
    ]
    if any(recipe["jitter"]):
        steps.append(v2.RandomApply([v2.ColorJitter(*recipe["jitter"])], p=0.8))
    steps.append(v2.RandomGrayscale(p=0.2))
    if recipe["blur"][slot]:
        steps.append(_blur(image_size, recipe["blur"][slot]))
    if recipe["solarize"][slot]:
        steps.append(v2.RandomSolarize(0.5, p=recipe["solarize"][slot]))
    return v2.Compose(steps)


def load_view_index(view_manifests: list[str | Path]) -> dict[str, dict[str, list[str]]]:
    """source -> image id -> view paths, from the generation stage's shard manifests."""
    index: dict[str, dict[str, list[str]]] = {}
    for path in view_manifests:
        for row in VIEWS.read(path, need=("id", "view", "source")).itertuples(index=False):
            index.setdefault(row.source, {}).setdefault(row.id, []).append(row.view)
    return index


def load_view_truth(view_manifests: list[str | Path]) -> dict[str, bool]:
    """view path -> whether the generator recorded a class change (the shapes renderer; empty for diffusion models)."""
    truth: dict[str, bool] = {}
    for path in view_manifests:
        views = VIEWS.read(path, need=("view", "class_changed")).dropna(subset=["class_changed"])
        truth.update(zip(views["view"], views["class_changed"].astype(bool)))
    return truth


class PretrainDataset(Dataset):
    """Samples of one experiment. ``mode`` "two_view": (view1, view2, local crops); "vision_language": (views,
    caption, real); "supervised": (view, class index), classes being the rows' labels in sorted order.

    Two-view (GenView): when the image has generated views and a draw under ``generated_prob`` succeeds, one of the
    two slots, chosen at random, takes a generated view instead of the real image; both slots are augmented
    independently. With ``multi_crop`` ({number, size, min_scale, max_scale}), ``number`` small crops follow, crop k
    taken from slot k mod 2's image, so the generated view gives local crops too (the official GenView release
    has no multi-crop recipe to copy). Vision-language (GenView++): view 0 is the real image; view v >= 1 comes from
    source ``sources[(v - 1) % len(sources)]`` with probability ``syn_ratio`` when the image has one, else the real
    image; with ``shuffle_views`` the sample's views are then put in a random order, as the official loader does, so
    each view slot (and each batch-norm batch of SLIP's image head) mixes real and generated images.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        *,
        mode: str,
        augmentation_preset: str,
        image_size: int,
        min_scale: float,
        seed: int,
        views: dict | None = None,
        sources: list[str] = (),
        generated_prob: float = 1.0,
        n_views: int = 2,
        syn_ratio: float = 1.0,
        shuffle_views: bool = True,
        multi_crop: dict | None = None,
        downsample: dict | None = None,
    ):
        self.rows = rows.reset_index(drop=True)
        self.classes = sorted(set(self.rows["label"]))
        self.mode, self.seed, self.epoch = mode, seed, 0
        self._cache: dict[str, torch.Tensor] = {}
        self._cache_bytes = 0
        self.views, self.sources = views or {}, list(sources)
        self.generated_prob, self.n_views, self.syn_ratio = generated_prob, n_views, syn_ratio
        self.shuffle_views = shuffle_views
        self.image_size = image_size
        self.pipelines = [
            augmentation(augmentation_preset, image_size, min_scale, slot, downsample=downsample) for slot in (0, 1)
        ]
        self.local_crops = multi_crop["number"] if multi_crop else 0
        self.local_pipeline = (
            augmentation(
                augmentation_preset,
                multi_crop["size"],
                multi_crop["min_scale"],
                max_scale=multi_crop["max_scale"],
                downsample=downsample,
            )
            if multi_crop
            else None
        )

    def __len__(self) -> int:
        return len(self.rows)

    def _image(self, path: str) -> torch.Tensor:
        """The decoded image in [0, 1]. Small images are kept decoded (as uint8, per loader process, up to
        IMAGE_CACHE_BYTES): a tiny dataset is then decoded once instead of every epoch. The pixels are the same
        either way, so the cache changes no result."""
        cached = self._cache.get(path)
        if cached is None:
            cached = v2.functional.to_image(load_rgb(path))
            if self._cache_bytes + cached.numel() <= IMAGE_CACHE_BYTES:
                self._cache[path] = cached
                self._cache_bytes += cached.numel()
        return v2.functional.to_dtype(cached, torch.float32, scale=True)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generated_choices(self, image_id: str, sources) -> list[str]:
        return [path for source in sources for path in self.views.get(source, {}).get(image_id, [])]

    def __getitem__(self, index: int):
        row = self.rows.iloc[index]
        with torch.random.fork_rng(devices=[]):
            # Seeds the CPU generator only (what fork_rng saves): torch.manual_seed would also queue a CUDA seed
            # per sample, which costs more than the crop at small image sizes.
            torch.random.default_generator.manual_seed(sample_seed(self.seed, self.epoch, index))
            rng = np.random.default_rng(sample_seed(self.seed + 1, self.epoch, index))
            real = self._image(row["path"])
            if self.mode == "two_view":
                return self._two_view(row, real, rng) + (index,)
            if self.mode == "supervised":
                return self.pipelines[0](real), self.classes.index(row["label"]), index
            return self._vision_language(row, real, rng) + (index,)

    def _pick_generated(self, image_id: str, rng) -> tuple[int, str] | None:
        """(slot, path) of the generated view that takes one of the two slots, or None (two-view mode)."""
        choices = self._generated_choices(image_id, self.sources)
        if choices and rng.random() < self.generated_prob:
            slot = int(rng.integers(2))
            return slot, choices[int(rng.integers(len(choices)))]
        return None

    def generated_view(self, index: int) -> str | None:
        """The generated view that sample ``index`` of the current epoch pairs with its image (two-view mode),
        recomputed from the sample's seed as :meth:`__getitem__` draws it."""
        rng = np.random.default_rng(sample_seed(self.seed + 1, self.epoch, index))
        picked = self._pick_generated(self.rows.iloc[index]["id"], rng)
        return None if picked is None else picked[1]

    def _two_view(self, row, real, rng):
        images = [real, real]
        picked = self._pick_generated(row["id"], rng)
        if picked is not None:
            images[picked[0]] = self._image(picked[1])
        view1, view2 = self.pipelines[0](images[0]), self.pipelines[1](images[1])
        if not self.local_crops:
            return view1, view2, None
        return view1, view2, torch.stack([self.local_pipeline(images[k % 2]) for k in range(self.local_crops)])

    def _pick_views(self, image_id: str, rng) -> tuple[list[str | None], list[int]]:
        """The generated view of each view slot (None: the real image) and the order the slots are put in
        (vision-language mode)."""
        picked: list[str | None] = []
        for v in range(self.n_views):
            path = None
            if v > 0 and self.sources:
                choices = self._generated_choices(image_id, [self.sources[(v - 1) % len(self.sources)]])
                if choices and rng.random() < self.syn_ratio:
                    path = choices[int(rng.integers(len(choices)))]
            picked.append(path)
        order = rng.permutation(len(picked)).tolist() if self.shuffle_views else list(range(len(picked)))
        return picked, order

    def generated_views(self, index: int) -> list[str | None]:
        """The generated view in each view position of sample ``index`` of the current epoch (vision-language
        mode), recomputed from the sample's seed as :meth:`__getitem__` draws them."""
        rng = np.random.default_rng(sample_seed(self.seed + 1, self.epoch, index))
        picked, order = self._pick_views(self.rows.iloc[index]["id"], rng)
        return [picked[v] for v in order]

    def _vision_language(self, row, real, rng):
        picked, order = self._pick_views(row["id"], rng)
        views = [self.pipelines[0](real if path is None else self._image(path)) for path in picked]
        views = [views[v] for v in order]
        resized_real = v2.functional.resize(real, [self.image_size, self.image_size], antialias=True)
        return torch.stack(views), row["caption"], resized_real


def epoch_indices(num_samples: int, global_batch: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's sample indices for one epoch, in order: a seeded permutation cut to whole global batches
    (drop_last), each global batch split into ``world`` contiguous local batches."""
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    steps = num_samples // global_batch
    local = global_batch // world
    batches = order[: steps * global_batch].reshape(steps, world, local)
    return batches[:, rank, :].reshape(-1).tolist()
