"""The pre-training data: real images, generated views joined from the shard manifests, augmented views.

Every random choice for a sample (which slot takes the generated view, which view, every augmentation) is drawn
from a generator seeded by (seed, epoch, index), so an epoch's batches are a pure function of the experiment: a run
resumed mid-epoch sees exactly the batches the uninterrupted run saw, with any number of loader workers. Views are
8-bit tensors (the trainer scales them to [0, 1] on its device); the augmentations are in augment.py.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from genview.contracts import VIEWS
from genview.data.images import decode_rgb, oriented_size
from genview.training.augment import ViewPipeline, WholeImage

IMAGE_CACHE_BYTES = 256 << 20  # per loader process


def sample_seed(seed: int, epoch: int, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{epoch}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


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
        views = VIEWS.read(path, need=("view",))
        if "class_changed" in views:  # hand-made manifests may have only the required columns
            views = views.dropna(subset=["class_changed"])
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
        augment_on: str = "cpu",
    ):
        self.rows = rows.reset_index(drop=True)
        self.classes = sorted(set(self.rows["label"]))
        self.records = self.rows.to_dict("records")  # one row per sample: much cheaper than DataFrame.iloc
        self.mode, self.seed, self.epoch = mode, seed, 0
        self._cache: dict[str, Image.Image] = {}
        self._cache_bytes = 0
        self.views, self.sources = views or {}, list(sources)
        self.generated_prob, self.n_views, self.syn_ratio = generated_prob, n_views, syn_ratio
        self.shuffle_views = shuffle_views
        self.preset, self.color_on_device = augmentation_preset, augment_on == "device"
        self.pipelines = [
            ViewPipeline(augmentation_preset, image_size, min_scale, slot, downsample=downsample) for slot in (0, 1)
        ]
        self.whole_image = WholeImage(image_size)
        self.local_crops = multi_crop["number"] if multi_crop else 0
        self.local_pipeline = (
            ViewPipeline(
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

    def _views(self, items: list[tuple[str, object]]) -> list:
        """The views of (path, pipeline) pairs: every view's draws first (in order, from the image sizes in the file
        headers), then each image decoded once, at the smallest size all of its crops allow, then the views cut
        from it. Small images are kept decoded at full size (per loader process, up to IMAGE_CACHE_BYTES): a tiny
        dataset is then decoded once instead of every epoch. Only the crops' sampling resolution depends on the
        decoded size, never the random draws."""
        opened, sizes = {}, {}
        with contextlib.ExitStack() as files:  # closes the files, keeps the decoded images (not Image.close)
            for path, _ in items:
                if path not in sizes:
                    cached = self._cache.get(path)
                    if cached is None:
                        opened[path] = files.enter_context(Image.open(path))
                    sizes[path] = cached.size if cached is not None else oriented_size(opened[path])
            params = [pipeline.draw(*sizes[path]) for path, pipeline in items]
            reduce: dict[str, int] = {}
            for (path, pipeline), drawn in zip(items, params):
                reduce[path] = min(reduce.get(path, 8), pipeline.reduction(drawn))
            images = {
                path: self._cache[path] if path in self._cache else self._decode(path, opened[path], reduce[path])
                for path in sizes
            }
        return [
            pipeline.apply(images[path], drawn, sizes[path][0], self.color_on_device)
            for (path, pipeline), drawn in zip(items, params)
        ]

    def _decode(self, path: str, handle: Image.Image, reduce: int) -> Image.Image:
        full = handle.size
        image = decode_rgb(handle, reduce)
        nbytes = image.width * image.height * 3
        if image.size in (full, full[::-1]) and self._cache_bytes + nbytes <= IMAGE_CACHE_BYTES:
            self._cache[path] = image
            self._cache_bytes += nbytes
        return image

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generated_choices(self, image_id: str, sources) -> list[str]:
        return [path for source in sources for path in self.views.get(source, {}).get(image_id, [])]

    def __getitem__(self, index: int):
        row = self.records[index]
        with torch.random.fork_rng(devices=[]):
            # Seeds the CPU generator only (what fork_rng saves): torch.manual_seed would also queue a CUDA seed
            # per sample, which costs more than the crop at small image sizes.
            torch.random.default_generator.manual_seed(sample_seed(self.seed, self.epoch, index))
            rng = np.random.default_rng(sample_seed(self.seed + 1, self.epoch, index))
            if self.mode == "two_view":
                return self._two_view(row, rng) + (index,)
            if self.mode == "supervised":
                (view,) = self._views([(row["path"], self.pipelines[0])])
                return view, self.classes.index(row["label"]), index
            return self._vision_language(row, rng) + (index,)

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
        picked = self._pick_generated(self.records[index]["id"], rng)
        return None if picked is None else picked[1]

    def _two_view(self, row, rng):
        paths = [row["path"], row["path"]]
        picked = self._pick_generated(row["id"], rng)
        if picked is not None:
            paths[picked[0]] = picked[1]
        items = list(zip(paths, self.pipelines))
        items += [(paths[k % 2], self.local_pipeline) for k in range(self.local_crops)]
        views = self._views(items)
        if not self.local_crops:
            return views[0], views[1], None
        return views[0], views[1], stack_views(views[2:])

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
        picked, order = self._pick_views(self.records[index]["id"], rng)
        return [picked[v] for v in order]

    def _vision_language(self, row, rng):
        picked, order = self._pick_views(row["id"], rng)
        items = [(row["path"] if path is None else path, self.pipelines[0]) for path in picked]
        *views, resized_real = self._views(items + [(row["path"], self.whole_image)])
        views = [views[v] for v in order]
        return stack_views(views), row["caption"], resized_real


def stack_views(views: list, dim: int = 0):
    """Stack views along ``dim``: tensors, or (8-bit view, colour row) pairs of the device path stacked as pairs."""
    if isinstance(views[0], tuple):
        return tuple(torch.stack(part, dim) for part in zip(*views))
    return torch.stack(views, dim)


def epoch_indices(num_samples: int, global_batch: int, seed: int, epoch: int, rank: int, world: int) -> list[int]:
    """This rank's sample indices for one epoch, in order: a seeded permutation cut to whole global batches
    (drop_last), each global batch split into ``world`` contiguous local batches."""
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    steps = num_samples // global_batch
    local = global_batch // world
    batches = order[: steps * global_batch].reshape(steps, world, local)
    return batches[:, rank, :].reshape(-1).tolist()
