"""Which torch device a command runs on."""

from __future__ import annotations


def resolve_device(name: str = "auto") -> str:
    """``auto`` is the first visible CUDA device when there is one, else the CPU."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from genview.errors import GenviewError

        raise GenviewError(f"device {name!r} requested but CUDA is not available here")
    return name
