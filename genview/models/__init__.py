"""Pretrained models by role: loaders and tiny offline stand-ins."""

from __future__ import annotations

import os


def is_local_path(path: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else (absolute, ./, ~, deeper paths) is meant as a folder."""
    return os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") > 1
