"""The view augmentations, checked as distributions: over many draws, each step's probability and parameter ranges
match the recipe; the crops match a plain re-implementation of RandomResizedCrop's sampler; what is drawn is what is
applied (CPU path), and the device path's batched colour steps equal torchvision's per-image functions."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms.v2 import functional as F2

from genview.training.augment import (
    AUGMENTATIONS,
    BLUR_SIGMA,
    COLOR_FIELDS,
    ViewPipeline,
    blur_kernel,
    color_on_device,
)

DRAWS = 3000


def within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """``count`` successes of ``n`` draws agree with probability ``p`` (within ``sigmas`` standard deviations)."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1e-9


def draws(pipeline: ViewPipeline, n: int = DRAWS, size=(500, 375), seed: int = 0):
    torch.manual_seed(seed)
    return [pipeline.draw(*size) for _ in range(n)]


def plain_random_resized_crop(rng, width, height, scale, ratio=(3 / 4, 4 / 3)):
    """RandomResizedCrop's sampler as its documentation states it: area share uniform in ``scale``, log aspect ratio
    uniform, ten tries, else the central crop of the nearest allowed ratio."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return int(round(width / ratio[0])), width
    if in_ratio > ratio[1]:
        return height, int(round(height * ratio[1]))
    return height, width


@pytest.mark.parametrize("min_scale", [0.08, 0.2])
def test_crops_follow_random_resized_crop(min_scale):
    width, height = 500, 375
    ours = draws(ViewPipeline("simclr", 224, min_scale), size=(width, height))
    rng = np.random.default_rng(0)
    plain = [plain_random_resized_crop(rng, width, height, (min_scale, 1.0)) for _ in range(DRAWS)]
    area = np.array([p.crop[2] * p.crop[3] for p in ours]) / (width * height)
    plain_area = np.array([h * w for h, w in plain]) / (width * height)
    log_ratio = np.log([p.crop[3] / p.crop[2] for p in ours])
    plain_log_ratio = np.log([w / h for h, w in plain])
    assert stats.ks_2samp(area, plain_area).pvalue > 1e-3
    assert stats.ks_2samp(log_ratio, plain_log_ratio).pvalue > 1e-3
    assert area.min() >= min_scale * 0.98 and area.max() <= 1.0
    # the crop lies inside the image, anywhere in it
    tops, lefts = np.array([p.crop[0] for p in ours]), np.array([p.crop[1] for p in ours])
    assert (tops >= 0).all() and (lefts >= 0).all()
    assert all(p.crop[0] + p.crop[2] <= height and p.crop[1] + p.crop[3] <= width for p in ours)
    centres = (lefts + np.array([p.crop[3] for p in ours]) / 2) / width
    assert abs(centres.mean() - 0.5) < 0.02


@pytest.mark.parametrize("preset", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("slot", [0, 1])
def test_probabilities_and_ranges_of_each_preset(preset, slot):
    recipe = AUGMENTATIONS[preset]
    drawn = draws(ViewPipeline(preset, 224, 0.08, slot), seed=slot)
    n = len(drawn)
    assert within(sum(p.flip for p in drawn), n, 0.5)
    assert within(sum(p.grayscale for p in drawn), n, 0.2)
    jittered = [p.jitter for p in drawn if p.jitter]
    assert within(len(jittered), n, 0.8 if any(recipe["jitter"]) else 0.0)
    if jittered:
        factors = np.array([j[1:] for j in jittered])
        for k, strength in enumerate(recipe["jitter"]):
            low, high = (-strength, strength) if k == 3 else (max(0.0, 1 - strength), 1 + strength)
            values = factors[:, k]
            assert values.min() >= low and values.max() <= high
            # uniform on [low, high]: Kolmogorov-Smirnov against the uniform distribution
            assert stats.kstest(values, "uniform", args=(low, high - low)).pvalue > 1e-3
        orders = [j[0] for j in jittered]
        assert all(sorted(order) == [0, 1, 2, 3] for order in orders)
        first = np.bincount([order[0] for order in orders], minlength=4)
        assert all(within(count, len(orders), 0.25) for count in first)  # a uniform random order
    sigmas = [p.blur_sigma for p in drawn if p.blur_sigma is not None]
    assert within(len(sigmas), n, recipe["blur"][slot])
    if len(sigmas) > 100:
        assert stats.kstest(sigmas, "uniform", args=(BLUR_SIGMA[0], BLUR_SIGMA[1] - BLUR_SIGMA[0])).pvalue > 1e-3
    assert within(sum(p.solarize for p in drawn), n, recipe["solarize"][slot])
    sides = [p.downsample for p in drawn if p.downsample]
    assert within(len(sides), n, recipe["downsample"])
    if sides:
        assert set(sides) == {64, 128} and within(sides.count(64), len(sides), 0.5)


def test_downsample_setting_replaces_the_presets():
    drawn = draws(ViewPipeline("simclr", 32, 0.08, downsample={"prob": 0.5, "sizes": [8]}), n=1000)
    assert within(sum(p.downsample == 8 for p in drawn), 1000, 0.5)
    assert all(p.downsample in (None, 8) for p in drawn)


def pattern(width=320, height=240, seed=0) -> Image.Image:
    """A colourful image with fine detail: blur, grayscale and downsampling all show in it."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    fine = rng.integers(-40, 40, (height, width, 3))
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=int) + fine
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def detail(view: torch.Tensor) -> float:
    """Mean absolute difference of horizontally neighbouring pixels: what blur and downsampling take away."""
    view = view.float()
    return float((view[..., 1:] - view[..., :-1]).abs().mean())


def test_the_cpu_path_applies_each_drawn_step():
    image = pattern()
    pipeline = ViewPipeline("byol", 64, 0.3, slot=1)
    torch.manual_seed(0)
    base = dataclasses.replace(
        pipeline.draw(*image.size), jitter=None, grayscale=False, blur_sigma=None, solarize=False, downsample=None
    )
    plain = pipeline.apply(image, base, image.width, color_on_device=False)
    assert plain.shape == (3, 64, 64) and plain.dtype == torch.uint8
    flipped = pipeline.apply(image, dataclasses.replace(base, flip=not base.flip), image.width, False)
    assert torch.equal(flipped, plain.flip(-1))
    gray = pipeline.apply(image, dataclasses.replace(base, grayscale=True), image.width, False)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2]) and not torch.equal(plain[0], plain[1])
    blurred = pipeline.apply(image, dataclasses.replace(base, blur_sigma=2.0), image.width, False)
    assert detail(blurred) < 0.6 * detail(plain)
    low = pipeline.apply(image, dataclasses.replace(base, downsample=64), image.width, False)
    assert detail(low) < detail(plain)
    solarized = pipeline.apply(image, dataclasses.replace(base, solarize=True), image.width, False)
    bright = plain >= 128
    assert torch.equal(solarized[bright], 255 - plain[bright]) and torch.equal(solarized[~bright], plain[~bright])
    darker = pipeline.apply(image, dataclasses.replace(base, jitter=((0, 1, 2, 3), 0.6, 1.0, 1.0, 0.0)), 320, False)
    assert float(darker.float().mean()) == pytest.approx(0.6 * float(plain.float().mean()), rel=0.02)


def test_reduced_jpeg_decoding_cuts_the_same_region(tmp_path):
    """A crop at least twice the view size is cut from a JPEG decoded at half size or less: the view shows the same
    region as from the full decode."""
    from genview.data.images import load_rgb

    path = tmp_path / "big.jpg"
    pattern(1280, 960).resize((1280, 960)).save(path, quality=95)
    pipeline = ViewPipeline("plain", 64, 0.5)
    torch.manual_seed(3)
    params = dataclasses.replace(pipeline.draw(1280, 960), grayscale=False)
    factor = pipeline.reduction(params)
    assert factor >= 2 and min(params.crop[2:]) >= factor * 64
    reduced_image = load_rgb(path, factor)
    assert reduced_image.width < 1280
    full = pipeline.apply(load_rgb(path), params, 1280, False).float()
    reduced = pipeline.apply(reduced_image, params, 1280, False).float()
    assert (full - reduced).abs().mean() < 4  # of 255: the same region, resampled differently
    shifted = dataclasses.replace(params, crop=(params.crop[0], params.crop[1] + 64, *params.crop[2:]))
    assert (pipeline.apply(load_rgb(path), shifted, 1280, False).float() - reduced).abs().mean() > 10


def per_image_reference(image: torch.Tensor, row: torch.Tensor, size: int) -> torch.Tensor:
    """The colour steps of one [0, 1] view with torchvision's functions, one after another."""
    field = dict(zip(COLOR_FIELDS, row.tolist()))
    if field["jitter"]:
        adjust = (F2.adjust_brightness, F2.adjust_contrast, F2.adjust_saturation, F2.adjust_hue)
        factors = (field["brightness"], field["contrast"], field["saturation"], field["hue"])
        for k in range(4):
            i = int(field[f"order{k}"])
            image = adjust[i](image, factors[i])
    if field["grayscale"]:
        image = F2.rgb_to_grayscale(image, num_output_channels=3)
    if field["blur_sigma"]:
        kernel = blur_kernel(size)
        image = F2.gaussian_blur(image, [kernel, kernel], [field["blur_sigma"]] * 2)
    if field["solarize"]:
        image = F2.solarize(image, 128 / 255)
    return image


def test_device_colour_steps_equal_torchvision_per_image():
    torch.manual_seed(0)
    pipeline = ViewPipeline("byol", 32, 0.08, slot=1)
    drawn = [pipeline.draw(100, 80) for _ in range(40)]
    drawn[0] = dataclasses.replace(drawn[0], blur_sigma=1.5, solarize=True, grayscale=True)  # every step at least once
    rows = torch.tensor([p.color_row() for p in drawn])
    assert rows[:, COLOR_FIELDS.index("jitter")].sum() > 20 and rows[:, COLOR_FIELDS.index("blur_sigma")].gt(0).any()
    images = torch.rand(len(drawn), 3, 32, 32)
    batched = color_on_device(images, rows, 32)
    expected = torch.stack([per_image_reference(image, row, 32) for image, row in zip(images, rows)])
    torch.testing.assert_close(batched, expected, atol=2e-5, rtol=0)


def test_device_path_draws_and_cuts_what_the_cpu_path_does(tmp_path):
    """Same seed, same sample: the device path's 8-bit crop is the CPU path's view before its colour steps, and its
    colour row holds the CPU path's draws (the plain preset: grayscale is its only colour step)."""
    import pandas as pd

    from genview.training.data import PretrainDataset

    paths = []
    for i in range(12):
        paths.append(str(tmp_path / f"{i}.jpg"))
        pattern(seed=i).save(paths[-1], quality=90)
    rows = pd.DataFrame({"id": [str(i) for i in range(12)], "path": paths, "caption": "", "label": 0})
    common = dict(mode="two_view", augmentation_preset="plain", image_size=32, min_scale=0.2, seed=5)
    cpu, device = PretrainDataset(rows, **common), PretrainDataset(rows, augment_on="device", **common)
    grays = 0
    for index in range(12):
        for slot in (0, 1):
            view = cpu[index][slot]
            crop, row = device[index][slot]
            gray = bool(row[COLOR_FIELDS.index("grayscale")])
            grays += gray
            if gray:
                assert torch.equal(view[0], view[1]) and not torch.equal(crop[0], crop[1])
            else:
                assert torch.equal(view, crop)
    assert 0 < grays < 24
