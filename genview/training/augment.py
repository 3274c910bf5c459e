"""Handcrafted view augmentations: each view's random parameters are drawn first, then applied either all on the
CPU to 8-bit PIL images (the official pipelines' way), or split: geometry on the CPU, colour on the training device
on whole batches (recipe ``augment_on: device``, for nodes with few CPUs per GPU).

Every draw comes from torch's global generator, which the dataset seeds per sample, through torchvision's own
parameter samplers (RandomResizedCrop, ColorJitter, GaussianBlur), so a view's parameters are a pure function of
(seed, epoch, index) whichever side applies them. Why this is fast on the CPU: the crop is drawn before decoding, so a
JPEG decodes at the smallest scale its crops allow (PIL's draft mode); the crop and resize are one PIL call; colour
work is done on the small 8-bit crop; the blur is PIL's (as in MoCo v2 and StableRep), not a 23-tap float kernel;
the views leave the loader as 8-bit tensors, scaled to [0, 1] on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms
from torchvision.transforms import functional as F
from torchvision.transforms.v2 import functional as F2
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from genview.errors import BadInputError

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
CROP_RATIO = (3 / 4, 4 / 3)
FLIP_PROB, JITTER_PROB, GRAYSCALE_PROB = 0.5, 0.8, 0.2
BLUR_SIGMA = (0.1, 2.0)
SOLARIZE_THRESHOLD = 128  # of 255: RandomSolarize(0.5) on [0, 1] images, BYOL's threshold
DRAFT_FACTORS = (8, 4, 2)  # JPEG decoding can scale by 1/2, 1/4, 1/8
#: The colour parameters of a view as one row of numbers (what the device path receives beside the 8-bit crop).
COLOR_FIELDS = ("jitter", "order0", "order1", "order2", "order3", "brightness", "contrast", "saturation", "hue")
COLOR_FIELDS += ("grayscale", "blur_sigma", "solarize")


def blur_kernel(image_size: int) -> int:
    """The device path's blur kernel: SimCLR's 10 % of the image side, odd (PIL's blur has no kernel size)."""
    return max(3, int(0.1 * image_size) // 2 * 2 + 1)


@dataclass(frozen=True)
class ViewParams:
    """One view's draws. ``crop`` is (top, left, height, width) in source pixels; ``jitter`` is None or (order of
    the four adjustments, brightness, contrast, saturation, hue factors); ``blur_sigma`` None: no blur;
    ``downsample``: the side of the DownSampleAndUpsample round trip, None: not applied."""

    downsample: int | None
    crop: tuple[int, int, int, int]
    flip: bool
    jitter: tuple | None
    grayscale: bool
    blur_sigma: float | None
    solarize: bool

    def color_row(self) -> list[float]:
        """The colour parameters in COLOR_FIELDS order (factors 1 and hue 0 where a step is off)."""
        order, b, c, s, h = self.jitter or ((0, 1, 2, 3), 1.0, 1.0, 1.0, 0.0)
        return [
            float(self.jitter is not None),
            *map(float, order),
            b,
            c,
            s,
            h,
            float(self.grayscale),
            self.blur_sigma or 0.0,
            float(self.solarize),
        ]


class ViewPipeline:
    """The view recipe of ``preset`` for view ``slot`` (BYOL's two slots differ), at ``image_size`` px.

    ``downsample`` ({prob, sizes}, or None for the preset's probability at sizes 64 and 128) sets
    DownSampleAndUpsample, applied to the source image before cropping.
    """

    def __init__(
        self,
        preset: str,
        image_size: int,
        min_scale: float,
        slot: int = 0,
        *,
        max_scale: float = 1.0,
        downsample: dict | None = None,
    ):
        if preset not in AUGMENTATIONS:
            raise BadInputError(f"unknown augmentation preset {preset!r} (known: {', '.join(AUGMENTATIONS)})")
        recipe = AUGMENTATIONS[preset]
        downsample = downsample or {"prob": recipe["downsample"], "sizes": list(DOWNSAMPLE_SIZES)}
        self.image_size, self.scale = image_size, (min_scale, max_scale)
        self.downsample_prob, self.downsample_sizes = downsample["prob"], list(downsample["sizes"])
        jitter = recipe["jitter"]
        self.jitter_ranges = (
            [[max(0.0, 1 - v), 1 + v] if v else None for v in jitter[:3]]
            + [[-jitter[3], jitter[3]] if jitter[3] else None]
            if any(jitter)
            else None
        )
        self.blur_prob, self.solarize_prob = recipe["blur"][slot], recipe["solarize"][slot]

    def draw(self, width: int, height: int) -> ViewParams:
        """Every random choice of one view of a ``width`` x ``height`` source, in a fixed order."""
        downsample = None
        if self.downsample_prob and float(torch.rand(())) < self.downsample_prob:
            downsample = self.downsample_sizes[int(torch.randint(len(self.downsample_sizes), ()))]
        # An empty tensor of the source's shape: torchvision only reads the size.
        crop = transforms.RandomResizedCrop.get_params(torch.empty(0, height, width), list(self.scale), CROP_RATIO)
        flip = float(torch.rand(())) < FLIP_PROB
        jitter = None
        if self.jitter_ranges and float(torch.rand(())) < JITTER_PROB:
            order, *factors = transforms.ColorJitter.get_params(*self.jitter_ranges)
            neutral = (1.0, 1.0, 1.0, 0.0)
            jitter = (tuple(int(i) for i in order), *(n if f is None else f for f, n in zip(factors, neutral)))
        grayscale = float(torch.rand(())) < GRAYSCALE_PROB
        blur_sigma = None
        if self.blur_prob and float(torch.rand(())) < self.blur_prob:
            blur_sigma = transforms.GaussianBlur.get_params(*BLUR_SIGMA)
        solarize = bool(self.solarize_prob) and float(torch.rand(())) < self.solarize_prob
        return ViewParams(downsample, tuple(crop), flip, jitter, grayscale, blur_sigma, solarize)

    def reduction(self, params: ViewParams) -> int:
        """The largest JPEG draft factor that leaves the crop at least ``image_size`` px on each side."""
        top, left, height, width = params.crop
        return next((f for f in DRAFT_FACTORS if min(height, width) >= f * self.image_size), 1)

    def apply(self, image: Image.Image, params: ViewParams, source_width: int, color_on_device: bool):
        """The 8-bit view tensor (3, S, S); with ``color_on_device``, the geometry only and the colour row beside
        it (a float tensor of COLOR_FIELDS)."""
        view = self.geometry(image, params, source_width)
        if color_on_device:
            return F2.pil_to_tensor(view), torch.tensor(params.color_row())
        return F2.pil_to_tensor(self.color(view, params))

    def geometry(self, image: Image.Image, params: ViewParams, source_width: int) -> Image.Image:
        """DownSampleAndUpsample, the crop resized to ``image_size`` (one PIL call) and the flip, on ``image``: the
        source, possibly decoded smaller than its ``source_width``."""
        if params.downsample:
            image = image.resize((params.downsample,) * 2, Image.BILINEAR).resize(image.size, Image.BILINEAR)
        top, left, height, width = params.crop
        s = image.width / source_width
        box = (left * s, top * s, (left + width) * s, (top + height) * s)
        view = image.resize((self.image_size,) * 2, Image.BILINEAR, box=box)
        return view.transpose(Image.FLIP_LEFT_RIGHT) if params.flip else view

    @staticmethod
    def color(view: Image.Image, params: ViewParams) -> Image.Image:
        """Jitter (in the drawn order), grayscale, blur and solarize on an 8-bit view, with torchvision's PIL
        functions and PIL's GaussianBlur (radius = sigma), as the official MoCo v2 / StableRep pipelines."""
        if params.jitter:
            order, *factors = params.jitter
            adjust = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
            neutral = (1.0, 1.0, 1.0, 0.0)
            for i in order:
                if factors[i] != neutral[i]:
                    view = adjust[i](view, factors[i])
        if params.grayscale:
            view = F.rgb_to_grayscale(view, num_output_channels=3)
        if params.blur_sigma is not None:
            view = view.filter(ImageFilter.GaussianBlur(params.blur_sigma))
        if params.solarize:
            view = ImageOps.solarize(view, SOLARIZE_THRESHOLD)
        return view


class WholeImage:
    """The source resized to ``image_size`` x ``image_size`` without cropping (GenView++'s real image for the
    image-text quality weights): the same interface as ViewPipeline, nothing random."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def draw(self, width: int, height: int) -> tuple[int, int]:
        return width, height

    def reduction(self, size: tuple[int, int]) -> int:
        return next((f for f in DRAFT_FACTORS if min(size) >= f * self.image_size), 1)

    def apply(self, image: Image.Image, size, source_width: int, color_on_device: bool) -> torch.Tensor:
        return F2.pil_to_tensor(image.resize((self.image_size,) * 2, Image.BILINEAR))


# --- colour on the device, on whole batches --------------------------------------------------------------------------
def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def _gray(images: torch.Tensor) -> torch.Tensor:
    return F2.rgb_to_grayscale(images, num_output_channels=1)


def _brightness(images, factor):
    return (images * factor).clamp(0, 1)


def _contrast(images, factor):
    return _blend(images, _gray(images).mean(dim=(-3, -2, -1), keepdim=True), factor)


def _saturation(images, factor):
    return _blend(images, _gray(images), factor)


def _hue(images, factor):
    hue, saturation, value = _rgb_to_hsv(images).unbind(dim=-3)
    hue = (hue + factor[:, 0]).remainder(1.0)
    return _hsv_to_rgb(torch.stack((hue, saturation, value), dim=-3))


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """A separable Gaussian blur with one sigma per image (reflect padding, as torchvision's)."""
    half = (kernel - 1) / 2
    x = torch.linspace(-half, half, kernel, device=images.device, dtype=images.dtype)
    weights = torch.exp(-0.5 * (x / sigma.to(images.dtype).view(-1, 1)) ** 2)
    weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(3, dim=0)  # (B*3, K)
    n, _, height, width = images.shape
    flat = torch.nn.functional.pad(images.reshape(1, n * 3, height, width), [kernel // 2] * 4, mode="reflect")
    flat = torch.nn.functional.conv2d(flat, weights.view(n * 3, 1, 1, kernel), groups=n * 3)
    flat = torch.nn.functional.conv2d(flat, weights.view(n * 3, 1, kernel, 1), groups=n * 3)
    return flat.view(n, 3, height, width)


def color_on_device(images: torch.Tensor, rows: torch.Tensor, image_size: int) -> torch.Tensor:
    """The CPU path's colour steps on a batch of [0, 1] views (N, 3, H, W), each with its own row of COLOR_FIELDS.
    Per-image parameters, so the batch is worked on in groups: the images whose k-th jitter step is the same
    adjustment, the images to grayscale, blur or solarize."""
    images = images.clone()
    rows = rows.to(images.device, images.dtype)
    field = {name: rows[:, i] for i, name in enumerate(COLOR_FIELDS)}
    adjust = (_brightness, _contrast, _saturation, _hue)
    factors = torch.stack([field["brightness"], field["contrast"], field["saturation"], field["hue"]], dim=1)
    jittered = field["jitter"] > 0
    for k in range(4):
        step = field[f"order{k}"]
        for i, function in enumerate(adjust):
            chosen = (jittered & (step == i)).nonzero().squeeze(1)
            if len(chosen):
                images[chosen] = function(images[chosen], factors[chosen, i].view(-1, 1, 1, 1))
    chosen = (field["grayscale"] > 0).nonzero().squeeze(1)
    if len(chosen):
        images[chosen] = _gray(images[chosen]).expand(-1, 3, -1, -1)
    chosen = (field["blur_sigma"] > 0).nonzero().squeeze(1)
    if len(chosen):
        images[chosen] = _gaussian_blur(images[chosen], field["blur_sigma"][chosen], blur_kernel(image_size))
    chosen = (field["solarize"] > 0).nonzero().squeeze(1)
    if len(chosen):
        images[chosen] = torch.where(images[chosen] >= SOLARIZE_THRESHOLD / 255, 1 - images[chosen], images[chosen])
    return images
