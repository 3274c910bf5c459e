"""PC-1 of an encoder's tokens, as pure functions on tensors: the math the foreground analysis
(:mod:`genview.analysis.foreground`) and the quality vector (:mod:`genview.quality.encoder`) share. No model is
loaded here; callers bring the tokens.

On a sample of training images (:func:`choose_fit_sample`): PC-1 ``v`` of the centred covariance of the encoder's
patch tokens (:class:`TokenMoments`), projections ``a = tokens @ v`` (not centred, :func:`project`), threshold = left
edge of the first of ``bins`` histogram bins whose cumulative share reaches ``cdf`` (:func:`threshold_from_histogram`).

PC-1's sign is arbitrary. ``sign: auto`` takes the orientation under which the tokens above the threshold lie nearer
the image centre on average (objects are mostly central), each orientation with its own threshold
(:func:`choose_sign`); a fit stores ``sign * v``, so every consumer only computes ``tokens @ vector > threshold``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

#: The allowed values of a fit's ``sign``: chosen by :func:`choose_sign`, or fixed.
SIGNS = ("auto", 1, -1)


class TokenMoments:
    """Running count, sum and sum of outer products of tokens (float64), enough for their covariance.

    Lets PC-1 be fitted batch by batch: at paper scale the sample's tokens (10,000 x 256 x 1280) take 13 GB.
    """

    def __init__(self):
        self.count = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, tokens: torch.Tensor) -> None:
        rows = tokens.reshape(-1, tokens.shape[-1]).double()
        if self.total is None:
            self.total = rows.new_zeros(rows.shape[1])
            self.outer = rows.new_zeros(rows.shape[1], rows.shape[1])
        self.count += rows.shape[0]
        self.total += rows.sum(0)
        self.outer += rows.T @ rows

    def pc1(self) -> torch.Tensor:
        """Top eigenvector (float32, unit norm) of the centred covariance, largest component positive."""
        if self.count < 2:
            raise ValueError(f"PC-1 needs at least 2 tokens, got {self.count}")
        mean = self.total / self.count
        covariance = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        _, vectors = torch.linalg.eigh(covariance)  # eigenvalues ascending
        vector = vectors[:, -1]
        # eigh's sign may differ between LAPACK/cuSOLVER builds; fixing it makes `sign: 1` mean one vector.
        if vector[vector.abs().argmax()] < 0:
            vector = -vector
        return vector.float()


def fit_pc1(tokens: torch.Tensor) -> torch.Tensor:
    """PC-1 (D,) of the centred covariance of ``tokens`` (N, D); see :meth:`TokenMoments.pc1`."""
    moments = TokenMoments()
    moments.add(tokens)
    return moments.pc1()


def project(tokens: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``tokens @ vector`` over the last axis, deliberately not centred (the official projection)."""
    return tokens @ vector.to(device=tokens.device, dtype=tokens.dtype)


def float64_array(values) -> np.ndarray:
    """``values`` (a number, sequence, array or tensor) as a float64 numpy array."""
    # Not torch.as_tensor: it makes Python floats float32 (0.2 -> 0.2000000030), moving them across edges.
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def threshold_from_histogram(values, bins: int = 200, cdf: float = 0.65) -> float:
    """Left edge of the first of ``bins`` equal bins on [min, max] whose cumulative share reaches ``cdf``."""
    if not 0 < cdf <= 1:
        raise ValueError(f"cdf must be in (0, 1], got {cdf}")
    values = float64_array(values).ravel()
    if values.size == 0:
        raise ValueError("no values to threshold")
    counts, edges = np.histogram(values, bins=bins)
    # A share computed as count / total equals the literal cdf exactly when it is that fraction (e.g. 13/20).
    share = np.cumsum(counts) / counts.sum()
    return float(edges[np.argmax(share >= cdf)])


def token_centre_distance(grid_hw: tuple[int, int]) -> torch.Tensor:
    """Distance (in image sides) from each token's centre to the image centre, row-major (h·w,)."""
    h, w = grid_hw
    rows = (torch.arange(h, dtype=torch.float64) + 0.5) / h - 0.5
    cols = (torch.arange(w, dtype=torch.float64) + 0.5) / w - 0.5
    return torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2).reshape(-1)


def mean_centre_distance_above(projections: torch.Tensor, grid_hw: tuple[int, int], threshold: float) -> float:
    """Mean distance to the image centre of all tokens projecting above ``threshold`` (inf if none)."""
    above = (projections > threshold).reshape(-1, grid_hw[0] * grid_hw[1]).cpu()
    count = int(above.sum())
    if count == 0:
        return math.inf
    return float((above * token_centre_distance(grid_hw)).sum() / count)


def choose_sign(projections: torch.Tensor, grid_hw: tuple[int, int], *, bins: int = 200, cdf: float = 0.65) -> int:
    """+1 or -1: the orientation of PC-1 whose above-threshold tokens lie nearer the image centre on average

    ``projections`` (B, h·w) are un-signed; each orientation gets its own threshold, since flipping the sign
    changes the histogram's cumulative shares. A tie keeps +1.
    """
    if projections.shape[-1] != grid_hw[0] * grid_hw[1]:
        raise ValueError(f"{projections.shape[-1]} tokens per image do not form a {grid_hw[0]}x{grid_hw[1]} grid")
    distance = {}
    for sign in (1, -1):
        signed = sign * projections
        distance[sign] = mean_centre_distance_above(signed, grid_hw, threshold_from_histogram(signed, bins, cdf))
    return 1 if distance[1] <= distance[-1] else -1


def choose_fit_sample(manifest: pd.DataFrame, *, per_class: int, sample_size: int, seed: int) -> pd.DataFrame:
    """Train rows to fit the PCA on: ``per_class`` per label if every row has one, else ``sample_size``.

    Rows are sorted by id first, so the sample depends on the seed and the data, not on the row order.
    """
    rows = manifest[manifest["split"] == "train"].sort_values("id", kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    if len(rows) and (rows["label"] != "").all():
        chosen = []
        for _, group in rows.groupby("label", sort=True):
            chosen.extend(rng.choice(group.index.to_numpy(), size=min(per_class, len(group)), replace=False))
    else:
        chosen = rng.choice(len(rows), size=min(sample_size, len(rows)), replace=False)
    return rows.loc[sorted(chosen)].reset_index(drop=True)
