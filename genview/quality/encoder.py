"""The frozen quality encoder (official: open_clip ``convnext_base_w`` / ``laion2b_s13b_b82k_augreg``, 224 px)
and the quality weights it gives a training batch (docs/method.md §3).

Inputs are float images in [0, 1] (B, 3, H, W), e.g. the augmented views a method trains on; the encoder
resizes them (bilinear, antialiased, no crop) and normalises them with CLIP statistics, or ImageNet statistics
(``normalization="imagenet"``), which is what the official GenView++ fed the CLIP ConvNeXt. Everything runs
without autograd, in bf16 autocast on CUDA and float32 elsewhere; results are float32 and carry no graph, so
they can multiply a loss.

``fit_quality_vector`` fits the PC-1 vector of the soft masks on the encoder's tokens of a training sample,
with the sign rule of :mod:`genview.analysis.pc1`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from genview.analysis.pc1 import (
    SIGNS,
    TokenMoments,
    choose_fit_sample,
    choose_sign,
    project,
)
from genview.contracts import MANIFEST
from genview.data.images import NORMALIZATION, load_rgb
from genview.errors import BadInputError, ConfigError
from genview.io import atomic_path
from genview.models import check_encoder_stamp, encoder_stamp
from genview.models.open_clip_models import load_open_clip, token_map_and_embedding
from genview.quality.weights import (
    genview_weights,
    grouped_weights,
    image_image_weights,
    image_text_weights,
    pair_quality,
    pooled_features,
    soft_masks,
)
from genview.runtime.distributed import gather_no_grad, rank
from genview.runtime.progress import progress

log = logging.getLogger(__name__)


class QualityEncoder:
    """A frozen open_clip model (role ``quality_encoder``): spatial tokens, image and text embeddings.

    ``image_size`` (int or (h, w)) is what images are resized to; by default the model's configured size.
    ConvNeXt towers take any size (the official run used 224 px for convnext_base_w, whose open_clip config
    says 256); ViT towers need their configured one.
    """

    def __init__(
        self,
        encoder_spec: dict,
        *,
        device: str = "cpu",
        normalization: str = "clip",
        image_size: int | tuple[int, int] | None = None,
    ):
        if normalization not in NORMALIZATION:
            raise ConfigError(
                f"quality encoder normalization must be one of {', '.join(NORMALIZATION)}, got {normalization!r}"
            )
        self.device = torch.device(device)
        self.model, _ = load_open_clip(encoder_spec, device, role="quality_encoder")
        self.model.requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(encoder_spec["model"])
        size = image_size or self.model.visual.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        mean, std = NORMALIZATION[normalization]
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _prepare(self, images01: torch.Tensor) -> torch.Tensor:
        """[0, 1] images (B, 3, H, W), on any device, -> normalised encoder input at ``image_size``."""
        if images01.ndim != 4 or images01.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images01.shape)}")
        images = images01.to(self.device, torch.float32)
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return (images - self.mean) / self.std

    def _encode(self, prepared: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            token_map, embedding = token_map_and_embedding(self.model, prepared)
        return token_map.float(), embedding.float()

    @torch.no_grad()
    def features(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token map (B, h, w, D) and projected image embedding (B, E) of [0, 1] images (B, 3, H, W)."""
        return self._encode(self._prepare(images01))

    @torch.no_grad()
    def text_embedding(self, captions: list[str]) -> torch.Tensor:
        """Projected text embeddings (B, E) of ``captions``, by the encoder's own text tower and tokenizer."""
        tokens = self.tokenizer(list(captions)).to(self.device)
        with self._autocast():
            return self.model.encode_text(tokens).float()


def load_quality_vector(path: str | os.PathLike) -> torch.Tensor:
    """The signed PC-1 vector (D,) that :func:`fit_quality_vector` wrote."""
    try:
        with np.load(path) as fit:
            return torch.from_numpy(fit["vector"].astype(np.float32))
    except (OSError, ValueError, KeyError) as error:
        raise BadInputError(f"{path}: not a quality-vector fit: {error}") from None


class QualityScorer(QualityEncoder):
    """:class:`QualityEncoder` plus the PC-1 vector of ``vector_npz``: foreground/background features and the
    GenView / GenView++ weights of a batch."""

    def __init__(
        self,
        encoder_spec: dict,
        vector_npz: str | os.PathLike,
        *,
        device: str = "cpu",
        normalization: str = "clip",
        image_size: int | tuple[int, int] | None = None,
    ):
        super().__init__(encoder_spec, device=device, normalization=normalization, image_size=image_size)
        self.vector_npz = vector_npz
        with np.load(vector_npz) as fit:
            check_encoder_stamp(dict(fit), encoder_spec, "quality_encoder", vector_npz)
        self.vector = load_quality_vector(vector_npz).to(self.device)

    def _pooled_foreground_background(self, token_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = token_map.flatten(1, 2)
        if tokens.shape[-1] != len(self.vector):
            raise BadInputError(
                f"{self.vector_npz} was fitted on {len(self.vector)}-d tokens; the quality encoder gives "
                f"{tokens.shape[-1]}-d, refit it with this encoder"
            )
        foreground, background = soft_masks(project(tokens, self.vector))
        return pooled_features(tokens, foreground), pooled_features(tokens, background)

    @torch.no_grad()
    def foreground_background(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground and background features ``z_fg``, ``z_bg`` (B, D) of [0, 1] images."""
        token_map, _ = self.features(images01)
        return self._pooled_foreground_background(token_map)

    @torch.no_grad()
    def pair_quality(self, images1: torch.Tensor, images2: torch.Tensor) -> torch.Tensor:
        """GenView's quality ``q`` (B,) of B image pairs (the score its weights are a softmax of)."""
        fg, bg = self.foreground_background(torch.cat([images1, images2]))
        fg1, fg2 = fg.chunk(2)
        bg1, bg2 = bg.chunk(2)
        return pair_quality(fg1, bg1, fg2, bg2)

    @torch.no_grad()
    def two_view_weights(
        self, view1: torch.Tensor, view2: torch.Tensor, gamma: float = 1.0, group_size: int | None = None
    ) -> torch.Tensor:
        """GenView's per-sample weights (B,) of this process's B view pairs; both views go through one forward.

        The softmax runs over groups of ``group_size`` consecutive pairs of the global batch (all processes in
        rank order; at most the whole batch), so the groups do not depend on the number of GPUs. None: this
        process's batch, the official code's per-GPU group."""
        token_map, _ = self._encode(torch.cat([self._prepare(view1), self._prepare(view2)]))
        fg, bg = self._pooled_foreground_background(token_map)
        fg1, fg2 = fg.chunk(2)
        bg1, bg2 = bg.chunk(2)
        if group_size is None:
            return genview_weights(fg1, bg1, fg2, bg2, gamma)
        quality = gather_no_grad(pair_quality(fg1, bg1, fg2, bg2))
        weights = grouped_weights(quality, min(group_size, len(quality)), gamma)
        return weights[rank() * len(fg1) : (rank() + 1) * len(fg1)]

    @torch.no_grad()
    def pairwise_weights(
        self,
        views: torch.Tensor,
        real: torch.Tensor,
        captions: list[str],
        gamma_ii: float = 2.0,
        gamma_it: float = 2.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GenView++'s image-image (V·B, V·B) and image-text (V·B, B) weights.

        ``views`` (V, B, 3, H, W) are V views of each of B captions; rows and columns of the views are
        view-major (row v·B + b is view v of caption b). ``real`` (B, 3, H', W') are the captions' real
        images, uncropped; they only give the background the image-text weights compare each view's with.
        """
        n_views, batch = views.shape[:2]
        if n_views < 2:
            raise ValueError(f"image-image weights need at least 2 views per caption, got {n_views}")
        if len(real) != batch or len(captions) != batch:
            raise ValueError(f"{batch} captions' views, but {len(real)} real images and {len(captions)} captions")
        token_map, embedding = self._encode(torch.cat([self._prepare(views.flatten(0, 1)), self._prepare(real)]))
        fg, bg = self._pooled_foreground_background(token_map)
        n_rows = n_views * batch
        labels = torch.arange(n_rows, device=self.device) % batch
        image_image = image_image_weights(fg[:n_rows], bg[:n_rows], labels, gamma_ii)
        image_text = image_text_weights(
            embedding[:n_rows], self.text_embedding(captions), bg[:n_rows], bg[n_rows:], labels, gamma_it
        )
        return image_image, image_text


# --- Fitting the vector -------------------------------------------------------------------------------------


def load_centre_crop(path: str, size: tuple[int, int]) -> torch.Tensor:
    """[0, 1] image (3, h, w): centre crop to the aspect of ``size``, resized (the CLIP preprocessing)."""
    image = ImageOps.fit(load_rgb(path), (size[1], size[0]), method=Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def _token_maps(encoder: QualityEncoder, paths: list[str], batch_size: int, desc: str):
    """Yield the token maps (B, h, w, D) of ``paths``, in order, ``batch_size`` images at a time."""
    with progress(total=len(paths), desc=desc, unit="img") as bar:
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            token_map, _ = encoder.features(torch.stack([load_centre_crop(path, encoder.image_size) for path in batch]))
            bar.update(len(batch))
            yield token_map


def fit_quality_vector(
    manifest_csv: str | os.PathLike,
    encoder_spec: dict,
    out_npz: str | os.PathLike,
    *,
    per_class: int = 10,
    sample_size: int = 10000,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "cpu",
    normalization: str = "clip",
    image_size: int | tuple[int, int] | None = None,
    sign: str | int = "auto",
) -> dict:
    """Fit PC-1 of the quality encoder's tokens on a sample of the manifest's train split; write ``out_npz``.

    The sign matters here (it swaps foreground and background): ``auto`` picks the orientation whose
    foreground tokens (above the foreground analysis' histogram threshold) lie nearer the image centre, as
    :func:`genview.analysis.pc1.choose_sign` documents. The npz holds ``vector`` (signed, float32),
    ``sign``, ``sample_ids`` and ``grid`` (token rows, columns); they are also returned.
    """
    if sign not in SIGNS:
        raise ConfigError(f"quality vector sign must be one of auto, 1, -1, got {sign!r}")
    manifest = MANIFEST.read(manifest_csv)
    sample = choose_fit_sample(manifest, per_class=per_class, sample_size=sample_size, seed=seed)
    if sample.empty:
        raise BadInputError(f"{manifest_csv}: no train rows to fit the quality vector on")
    encoder = QualityEncoder(encoder_spec, device=device, normalization=normalization, image_size=image_size)
    # Manifest images were verified when the dataset was indexed, so they are loaded without a guard.
    paths = sample["path"].tolist()

    # Two passes over the sample instead of keeping its tokens (see TokenMoments); the second for the sign.
    pc1, grid = _pc1_and_grid(encoder, paths, batch_size)
    chosen = _choose_pc1_sign(encoder, paths, batch_size, pc1, grid) if sign == "auto" else int(sign)
    fit = {
        "vector": (chosen * pc1).cpu().numpy().astype(np.float32),
        "sign": np.int64(chosen),
        "sample_ids": sample["id"].to_numpy(dtype=str),
        "grid": np.array(grid, dtype=np.int64),
        "encoder_stamp": np.str_(encoder_stamp(encoder_spec, "quality_encoder")),
    }
    log.info(
        "quality vector fit: %d image(s) of %dx%d %d-d tokens, sign %+d (%s)",
        len(sample), *grid, len(fit["vector"]), chosen, sign,
    )  # fmt: skip
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **fit)
    return fit


def _pc1_and_grid(encoder: QualityEncoder, paths: list[str], batch_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """PC-1 (D,) of the tokens of ``paths`` and the token grid (rows, columns) they come in."""
    moments = TokenMoments()
    for token_map in _token_maps(encoder, paths, batch_size, "fit quality PCA"):
        moments.add(token_map)
        grid = tuple(token_map.shape[1:3])
    return moments.pc1(), grid


def _choose_pc1_sign(
    encoder: QualityEncoder, paths: list[str], batch_size: int, pc1: torch.Tensor, grid: tuple[int, int]
) -> int:
    """The sign of :func:`genview.analysis.pc1.choose_sign` for ``pc1``, from the tokens of ``paths`` encoded again."""
    projections = torch.cat(
        [
            project(token_map, pc1).flatten(1).cpu()
            for token_map in _token_maps(encoder, paths, batch_size, "quality PCA sign")
        ]
    )
    return choose_sign(projections, grid)
