"""``genview models fetch``: download every hub model a config names into the cache its offline jobs read.

Each role is downloaded by the library that loads it, with the config's own settings, so the jobs find exactly the
files they ask for: the diffusers pipelines with ``DiffusionPipeline.download`` (revision and weights variant), the
chat model with ``huggingface_hub.snapshot_download`` (revision ``main``), the open_clip encoders with open_clip's
``download_pretrained`` (the file of the pretrained tag; ``hf-hub:`` models: their config and weights). Local folders,
``local-dir:`` models and weights files are skipped with a line saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from genview.errors import GenviewError
from genview.models import is_local_path
from genview.models.offline import HUB_SUBDIR, OPEN_CLIP_SUBDIR, is_offline
from genview.models.open_clip_models import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, open_clip_download

DIFFUSERS_ROLES = ("unclip", "text2img")
OPEN_CLIP_ROLES = ("fg_encoder", "quality_encoder")
CHAT_ROLE = "complexity_llm"
ROLES = (*DIFFUSERS_ROLES, *OPEN_CLIP_ROLES, CHAT_ROLE)


def _local(path: str) -> bool:
    return is_local_path(path) or Path(path).expanduser().is_dir()


def fetch_models(
    config: dict, cache: str | Path | None = None, roles: list[str] | None = None, say: Callable[[str], None] = print
) -> list[str]:
    """Download the hub models of ``config`` (or of ``roles`` only) into ``cache`` (None: the config's
    ``models.cache_dir``, else the libraries' default caches); returns the roles downloaded."""
    if is_offline():
        raise GenviewError(
            "downloads are off in this shell (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set): "
            "unset them to fetch models"
        )
    models = config["models"]
    unknown = sorted(set(roles or ()) - set(ROLES))
    if unknown:
        raise GenviewError(f"--roles: unknown role(s) {unknown} (roles: {', '.join(ROLES)})")
    root = cache if cache is not None else models.get("cache_dir")
    root = Path(root).expanduser().resolve() if root else None
    hub_cache = str(root / HUB_SUBDIR) if root else None
    open_clip_cache = str(root / OPEN_CLIP_SUBDIR) if root else None
    fetched = []
    for role in roles or ROLES:
        spec = models[role]
        if role == CHAT_ROLE and config["analysis"]["complexity_scorer"] != "llm" and not roles:
            say(
                f"models.{role}: skipped, analysis.complexity_scorer is {config['analysis']['complexity_scorer']!r}"
                " (the chat model is not used)"
            )
            continue
        if role in OPEN_CLIP_ROLES:
            done = _fetch_open_clip(role, spec, open_clip_cache, say)
        else:
            done = _fetch_hub_repo(role, spec, hub_cache, say)
        if done:
            fetched.append(role)
    where = f"under {root}" if root else "into the libraries' default caches"
    say(
        f"{len(fetched)} model(s) fetched {where}"
        + (f"; set models.cache_dir: {root} and models.offline: true for the jobs" if root else "")
    )
    return fetched


def _fetch_hub_repo(role: str, spec: dict, hub_cache: str | None, say) -> bool:
    if spec.get("renderer"):
        say(f"models.{role}: skipped, the {spec['renderer']} renderer needs no weights")
        return False
    path = spec["path"]
    if _local(path):
        say(f"models.{role}: skipped, {path} is a local folder")
        return False
    say(
        f"models.{role}: fetching {path}"
        + "".join(f" ({key} {spec[key]})" for key in ("revision", "variant") if spec.get(key))
        + " ..."
    )
    try:
        if role in DIFFUSERS_ROLES:
            from diffusers import DiffusionPipeline

            folder = DiffusionPipeline.download(
                path, revision=spec.get("revision"), variant=spec.get("variant"), cache_dir=hub_cache
            )
        else:
            from huggingface_hub import snapshot_download

            folder = snapshot_download(path, cache_dir=hub_cache)
    except Exception as error:  # the libraries raise many kinds (HTTP, repository not found, gated, disk)
        raise GenviewError(f"models.{role}: cannot fetch {path!r}: {type(error).__name__}: {error}") from None
    say(f"models.{role}: {path} -> {folder}")
    return True


def _fetch_open_clip(role: str, spec: dict, cache_dir: str | None, say) -> bool:
    name, pretrained = spec["model"], spec.get("pretrained")
    if name.startswith(LOCAL_DIR_PREFIX):
        say(f"models.{role}: skipped, {name} is a local folder")
        return False
    if not name.startswith(HF_HUB_PREFIX) and not pretrained:
        say(f"models.{role}: skipped, {name} has no pretrained weights set (randomly initialised)")
        return False
    if pretrained and os.path.isfile(os.path.expanduser(pretrained)):
        say(f"models.{role}: skipped, pretrained {pretrained} is a local weights file")
        return False
    say(f"models.{role}: fetching open_clip {name}" + (f" / {pretrained}" if pretrained else "") + " ...")
    try:
        files = open_clip_download(name, pretrained, cache_dir)
    except GenviewError:
        raise
    except Exception as error:
        raise GenviewError(
            f"models.{role}: cannot fetch open_clip {name} / {pretrained}: {type(error).__name__}: {error}"
        ) from None
    say(f"models.{role}: {name} -> {', '.join(files)}")
    return True
