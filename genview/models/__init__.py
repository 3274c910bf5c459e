"""Pretrained models by role: loaders, tiny offline stand-ins and the shapes renderer (a generator stand-in that knows
the ground truth)."""

from __future__ import annotations

import os


def is_local_path(path: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else (absolute, ./, ~, deeper paths) is meant as a folder."""
    return os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") > 1


def model_identity(spec: dict, role: str) -> dict:
    """What identifies a model role's weights for the caches made with it: the hub id with its revision, variant and
    input size, or, for a local folder, a fingerprint of its files instead of the path (so a rebuilt or replaced
    folder invalidates them, and a moved one does not)."""
    from pathlib import Path

    from genview.io import folder_fingerprint

    if spec.get("renderer"):  # the shapes renderer: its rules and how its dataset was drawn
        from genview.data import SHAPES_ROOT
        from genview.io import file_fingerprint

        style = Path(SHAPES_ROOT.format(name=spec["dataset"]), "style.json")
        return {"role": role, **spec, "style": file_fingerprint(style) if style.is_file() else None}
    identity = {
        "role": role,
        **{k: v for k, v in spec.items() if k in ("path", "model", "pretrained", "revision", "variant", "image_size")},
    }
    location = spec.get("path") or spec.get("model") or ""
    local = location.removeprefix("local-dir:")
    if location and (location.startswith("local-dir:") or is_local_path(location) or Path(local).is_dir()):
        identity = {k: v for k, v in identity.items() if k not in ("path", "model")}
        identity["local_fingerprint"] = folder_fingerprint(local)
    return identity


def encoder_stamp(spec: dict, role: str) -> str:
    """The stamp a fit made with the encoder of ``spec`` carries (foreground PCA, quality vector)."""
    from genview.io import settings_stamp

    return settings_stamp(model_identity(spec, role))


def check_encoder_stamp(fit: dict, spec: dict, role: str, path) -> None:
    """A fit is used only with the encoder it was made with (files without a stamp predate stamps and pass)."""
    from genview.errors import BadInputError

    stamp = fit.get("encoder_stamp")
    if stamp is not None and str(stamp) != encoder_stamp(spec, role):
        raise BadInputError(f"{path} was fitted with another models.{role} than {spec}; rerun its fit")
