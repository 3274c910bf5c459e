"""Generate one shard of views for one source, resumably and reproducibly.

Reproducibility: every view has its own generator seeded from (seed, source, image id, sample), and every pipeline call
is padded to a multiple of PAD_MULTIPLE images. BLAS kernels compute rows in blocks and treat a partial block
differently, so without the padding the same image gives slightly different pixels at another batch size or position;
with it, a view is byte-identical whatever the batch size, shard count or resume point (checked on CPU in the tests).
"""

from __future__ import annotations

import hashlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from genview.data.images import image_problem, load_rgb
from genview.errors import BadInputError, GenviewError
from genview.io import atomic_path

log = logging.getLogger(__name__)

SOURCES = ("ic", "tc", "itc")
ROLE_FOR_SOURCE = {"ic": "unclip", "tc": "text2img", "itc": "unclip"}
PAD_MULTIPLE = 8
IO_THREADS = 4
VIEW_COLUMNS = ["id", "view", "source", "sample", "noise_level", "guidance_scale", "seed"]


def view_seed(seed: int, source: str, image_id: str, sample: int) -> int:
    """A 63-bit seed that depends only on what identifies the view."""
    digest = hashlib.sha256(f"{seed}/{source}/{image_id}/{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class ViewTask:
    id: str
    path: str
    caption: str
    sample: int
    noise_level: int | None
    guidance_scale: float
    seed: int
    out: Path


def _setting(source_config: dict, key: str, params_row: dict | None):
    value = source_config[key]
    if value != "adaptive":
        return value
    adaptive = params_row.get(key) if params_row else None
    if adaptive is None or adaptive == "" or (isinstance(adaptive, float) and math.isnan(adaptive)):
        return None
    return adaptive


def plan_views(
    shard: pd.DataFrame, params: pd.DataFrame | None, source: str, generation: dict, seed: int, views_dir: Path
) -> tuple[list[ViewTask], list[tuple[str, str]]]:
    """The views a shard needs for ``source`` and the rows that cannot have one (with the reason)."""
    source_config = generation[source]
    params_by_id = {} if params is None else params.set_index("id").to_dict("index")
    tasks, skipped = [], []
    for row in shard.itertuples(index=False):
        params_row = params_by_id.get(row.id)
        if source in ("tc", "itc") and not row.caption:
            skipped.append((row.path, f"no caption for source {source}"))
            continue
        guidance = _setting(source_config, "guidance_scale", params_row)
        noise = _setting(source_config, "noise_level", params_row) if "noise_level" in source_config else None
        if guidance is None or ("noise_level" in source_config and noise is None):
            skipped.append((row.path, f"no adaptive parameter for id {row.id} in the shard's params"))
            continue
        for sample in range(generation["samples"]):
            tasks.append(
                ViewTask(
                    id=row.id, path=row.path, caption=row.caption, sample=sample,
                    noise_level=None if noise is None else int(noise), guidance_scale=float(guidance),
                    seed=view_seed(seed, source, row.id, sample), out=views_dir / f"{row.id}_{sample}.jpg",
                )
            )
    return tasks, skipped


def group_by_settings(tasks: list[ViewTask]) -> list[list[ViewTask]]:
    """Tasks sharing (noise level, guidance), the pipelines' per-call scalars; in a fixed order."""
    groups: dict[tuple, list[ViewTask]] = {}
    for task in tasks:
        groups.setdefault((task.noise_level if task.noise_level is not None else -1, task.guidance_scale), []).append(task)
    return [groups[key] for key in sorted(groups)]


def view_is_complete(path: Path) -> bool:
    return path.is_file() and image_problem(path) is None


def run_pipeline(pipeline, source: str, tasks: list[ViewTask], images: list[Image.Image] | None, steps: int):
    """One pipeline call for ``tasks`` (same settings), padded to PAD_MULTIPLE; returns one PIL image per task."""
    import torch

    padding = -len(tasks) % PAD_MULTIPLE
    padded = tasks + [tasks[-1]] * padding
    # CPU generators draw the same starting noise on every device, so a GPU view starts where a CPU one does.
    generators = [torch.Generator("cpu").manual_seed(task.seed) for task in padded]
    arguments = dict(
        num_inference_steps=steps, guidance_scale=tasks[0].guidance_scale, generator=generators, output_type="pil"
    )
    if source == "tc":
        result = pipeline(prompt=[task.caption for task in padded], **arguments)
    else:
        padded_images = images + [images[-1]] * padding
        prompts = [task.caption if source == "itc" else "" for task in padded]
        result = pipeline(image=padded_images, prompt=prompts, noise_level=tasks[0].noise_level, **arguments)
    return result.images[: len(tasks)]


def save_view(image: Image.Image, path: Path, size: int, quality: int) -> None:
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    with atomic_path(path) as tmp:
        image.convert("RGB").save(tmp, format="JPEG", quality=quality)


def _read_source(path: str):
    try:
        return load_rgb(path), None
    except (OSError, SyntaxError, ValueError) as error:
        return None, error


def _load_sources(tasks: list[ViewTask], on_bad_image: str, skipped: list, pool: ThreadPoolExecutor):
    """The batch's source images, decoded in ``pool``; unreadable ones fail the job or are skipped (policy)."""
    kept, images = [], []
    for task, (image, error) in zip(tasks, pool.map(_read_source, [task.path for task in tasks])):
        if error is None:
            kept.append(task)
            images.append(image)
        elif on_bad_image == "error":
            raise BadInputError(f"source image {task.path} (id {task.id}) cannot be read: {error}")
        else:
            skipped.append((task.path, f"unreadable source image: {error}"))
    return kept, images


def generate_shard(
    *,
    source: str,
    shard_csv: str | Path,
    params_csv: str | Path | None,
    views_dir: str | Path,
    out_manifest: str | Path,
    pipeline,
    generation: dict,
    seed: int,
    on_bad_image: str = "skip",
) -> pd.DataFrame:
    """Generate the missing views of one shard and write its manifest last (the workflow's output)."""
    if source not in SOURCES:
        raise GenviewError(f"unknown view source {source!r} (sources: {', '.join(SOURCES)})")
    views_dir = Path(views_dir)
    shard = pd.read_csv(shard_csv, dtype=str, keep_default_na=False)
    params = pd.read_csv(params_csv) if params_csv else None
    if params is not None:
        params["id"] = params["id"].astype(str)
    tasks, skipped = plan_views(shard, params, source, generation, seed, views_dir)
    for stale in views_dir.glob(".*.tmp"):  # left by a killed run; never a finished view
        stale.unlink()
    todo = [task for task in tasks if not view_is_complete(task.out)]
    log.info("%s %s: %d view(s) planned, %d reused from an earlier run, %d to generate, %d row(s) skipped",
             shard_csv, source, len(tasks), len(tasks) - len(todo), len(todo), len(skipped))
    batch_size = generation["batch_size"]
    # Decoding sources and encoding JPEGs run in threads (PIL releases the GIL), beside the pipeline's compute.
    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool, tqdm(
        total=len(todo), desc=f"{source} {Path(shard_csv).stem}", unit="view", mininterval=2
    ) as progress:
        saves = []
        for group in group_by_settings(todo):
            for start in range(0, len(group), batch_size):
                batch, images = group[start : start + batch_size], None
                if source != "tc":
                    batch, images = _load_sources(batch, on_bad_image, skipped, pool)
                    if not batch:
                        continue
                for task, view in zip(batch, run_pipeline(pipeline, source, batch, images, generation["steps"])):
                    saves.append(pool.submit(save_view, view, task.out, generation["save_size"],
                                             generation["jpeg_quality"]))
                progress.update(len(batch))
        for save in saves:
            save.result()  # a failed write fails the job before the manifest is written
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    skipped_paths = {path for path, _ in skipped}
    manifest = pd.DataFrame(
        [
            dict(id=t.id, view=str(t.out), source=source, sample=t.sample, noise_level=t.noise_level,
                 guidance_scale=t.guidance_scale, seed=t.seed)
            for t in tasks
            if t.path not in skipped_paths
        ],
        columns=VIEW_COLUMNS,
    )
    with atomic_path(out_manifest) as tmp:
        manifest.to_csv(tmp, index=False)
    return manifest


def collect_manifests(manifests: list[str | Path], out: str | Path) -> pd.DataFrame:
    """One view manifest of a (dataset, source) from its shards' manifests, in the order given.

    Training reads this one file instead of one per shard, and the workflow's DAG gets one edge per source instead
    of one per shard (the paper's CC3M has 512 shards per source).
    """
    frames = []
    for path in manifests:
        try:
            frame = pd.read_csv(path, dtype={"id": str, "view": str, "source": str})
        except FileNotFoundError:
            raise BadInputError(f"view manifest not found: {path}") from None
        missing = sorted(set(VIEW_COLUMNS) - set(frame.columns))
        if missing:
            raise BadInputError(f"{path}: not a view manifest (missing columns {missing})")
        frames.append(frame[VIEW_COLUMNS])
    collected = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=VIEW_COLUMNS)
    with atomic_path(out) as tmp:
        collected.to_csv(tmp, index=False)
    log.info("%s: %d view(s) from %d shard manifest(s)", out, len(collected), len(frames))
    return collected
