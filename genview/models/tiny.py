"""``build_tiny_models``: random-weight stand-ins for every model role, in the libraries' own save formats."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# The files whose presence means a role's stand-in is complete (the workflow's outputs).
TINY_MARKERS = {
    "unclip": "unclip/model_index.json",
    "text2img": "text2img/model_index.json",
    "fg_encoder": "fg_encoder/open_clip_config.json",
    "quality_encoder": "quality_encoder/open_clip_config.json",
    "complexity_llm": "complexity_llm/config.json",
}


def build_tiny_models(out_dir: str | Path, image_size: int = 32) -> dict[str, Path]:
    from genview.models.chat_llm import build_tiny_chat_model
    from genview.models.diffusion import build_tiny_pipeline
    from genview.models.open_clip_models import build_tiny_open_clip, build_tiny_quality_encoder

    out_dir = Path(out_dir)
    build_tiny_pipeline("unclip", out_dir / "unclip", image_size=image_size)
    build_tiny_pipeline("text2img", out_dir / "text2img", image_size=image_size)
    build_tiny_open_clip(out_dir / "fg_encoder")
    build_tiny_quality_encoder(out_dir / "quality_encoder")
    build_tiny_chat_model(out_dir / "complexity_llm")
    log.info("tiny stand-ins for %s written under %s", ", ".join(TINY_MARKERS), out_dir)
    return {role: out_dir / marker for role, marker in TINY_MARKERS.items()}
