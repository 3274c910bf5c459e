"""Model weights for machines without internet: ``genview models fetch`` fills a cache on a machine that has it (a
login node), and jobs then read only that cache.

The config's ``models.offline`` and ``models.cache_dir`` reach every job as environment variables: the Snakefile sets
them in its own environment when it is parsed, and jobs inherit them (local jobs as its children; SLURM jobs through
``sbatch --export=ALL``, and they re-parse the Snakefile anyway). They are execution settings, not rule params: the
same weights give the same outputs wherever they were read from.

- ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``: huggingface_hub, diffusers and transformers never touch the
  network (the loaders also pass ``local_files_only``, and check open_clip's cache themselves, since open_clip would
  otherwise try a URL download).
- ``GENVIEW_MODEL_CACHE=DIR``: the cache root. ``DIR/huggingface`` is the Hugging Face hub cache (also exported as
  ``HF_HUB_CACHE``) for the diffusers pipelines and the chat model; ``DIR/open_clip`` holds open_clip's downloads.
  Unset: each library's default cache (``~/.cache/huggingface/hub``; open_clip: the hub cache for hub-hosted
  weights, ``~/.cache/clip`` for URL downloads).
- ``GENVIEW_CONFIG_FILES``: the run's config files, so that the error for a missing weight can print the exact
  fetch command.

Import-light: the Snakefile imports this module.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from genview.errors import GenviewError

CACHE_VARIABLE = "GENVIEW_MODEL_CACHE"
CONFIG_FILES_VARIABLE = "GENVIEW_CONFIG_FILES"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HUB_SUBDIR = "huggingface"
OPEN_CLIP_SUBDIR = "open_clip"


def model_environment(models: dict, config_files: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The variables that make a job follow ``models.offline`` / ``models.cache_dir`` (empty when neither is set)."""
    environment = {}
    if models.get("cache_dir"):
        root = Path(models["cache_dir"]).expanduser().resolve()
        environment[CACHE_VARIABLE] = str(root)
        environment["HF_HUB_CACHE"] = str(root / HUB_SUBDIR)
    if models.get("offline"):
        environment.update(dict.fromkeys(OFFLINE_VARIABLES, "1"))
        if config_files:
            environment[CONFIG_FILES_VARIABLE] = os.pathsep.join(map(str, config_files))
    return environment


def is_offline(environ=os.environ) -> bool:
    """Whether downloads are off: huggingface_hub's own rule (HF_HUB_OFFLINE, or TRANSFORMERS_OFFLINE)."""
    value = environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def cache_root(environ=os.environ) -> Path | None:
    value = environ.get(CACHE_VARIABLE, "").strip()
    return Path(value).expanduser() if value else None


def hub_cache_dir(environ=os.environ) -> str | None:
    """The Hugging Face hub cache the loaders and the fetch use (None: the library default, HF_HUB_CACHE/HF_HOME)."""
    root = cache_root(environ)
    return str(root / HUB_SUBDIR) if root else None


def open_clip_cache_dir(environ=os.environ) -> str | None:
    """open_clip's ``cache_dir`` (None: its defaults)."""
    root = cache_root(environ)
    return str(root / OPEN_CLIP_SUBDIR) if root else None


def fetch_command(role: str, environ=os.environ) -> str:
    """The command that puts ``role``'s weights into the cache the jobs read."""
    files = [f for f in environ.get(CONFIG_FILES_VARIABLE, "").split(os.pathsep) if f]
    command = ["genview", "models", "fetch", *(files or ["CONFIG"]), "--roles", role]
    root = cache_root(environ)
    if root:
        command += ["--cache", str(root)]
    text = shlex.join(command)
    return text if files else text.replace("CONFIG", "CONFIG.yaml", 1) + " (CONFIG.yaml: this run's config file)"


def missing_offline_error(role: str, model: str, detail: str = "", environ=os.environ) -> GenviewError:
    """The error for a hub model that is not in the cache of a job that may not download."""
    cache = hub_cache_dir(environ) if not role.endswith("encoder") else open_clip_cache_dir(environ)
    where = f"the model cache {cache}" if cache else "the default model cache"
    reason = f" ({detail.strip().splitlines()[0][:300]})" if detail.strip() else ""
    return GenviewError(
        f"models.{role}: {model} is not in {where}, and this job runs offline (models.offline / HF_HUB_OFFLINE=1), "
        f"so it cannot download it{reason}. Fetch it on a machine with internet access (a login node), into the "
        f"cache the jobs read: {fetch_command(role, environ)}"
    )
