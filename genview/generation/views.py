"""Generate one shard of views for one source, resumably and reproducibly.

Reproducibility: every view has its own generator seeded from (seed, source, image id, sample), and every pipeline call
is padded to a multiple of PAD_MULTIPLE images. BLAS kernels compute rows in blocks and treat a partial block
differently, so without the padding the same image gives slightly different pixels at another batch size or position;
with it, a view is byte-identical whatever the batch size, shard count or resume point (checked on CPU in the tests).

Reuse: every view carries a stamp, a hash of everything that determines its pixels (the model's identity, source,
steps, noise level, guidance, size, JPEG quality, batch size, seed, the caption and the source image's bytes), in its
file name and in the manifest. A rerun reuses a view only when a file with its stamp exists and decodes; views made
under other settings are never picked up, and are deleted once the new manifest is written. The batch size is part
of the stamp because batched CUDA kernels may change pixels (on the CPU they do not, see above).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from genview.contracts import SHARD, VIEWS
from genview.data.images import image_problem, load_rgb
from genview.errors import BadInputError, GenviewError
from genview.io import atomic_path, file_sha256, settings_stamp
from genview.runtime.progress import progress
from genview.vocabulary import SOURCES

log = logging.getLogger(__name__)

PAD_MULTIPLE = 8
#: Generation settings that determine a view's pixels (with the per-view ones); "samples" only adds views.
STAMPED_SETTINGS = ("steps", "save_size", "jpeg_quality", "batch_size")
IO_THREADS = 4


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
    stamp: str
    out: Path
    label: str = ""


def _setting(source_config: dict, key: str, params_row: dict | None):
    value = source_config[key]
    if value != "adaptive":
        return value
    adaptive = params_row.get(key) if params_row else None
    return None if adaptive is None or pd.isna(adaptive) else adaptive


def _source_sha256(path: str) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return "unreadable"  # the job reports it when it loads the image


def plan_views(
    shard: pd.DataFrame,
    params: pd.DataFrame | None,
    source: str,
    generation: dict,
    seed: int,
    views_dir: Path,
    model: dict | None = None,
) -> tuple[list[ViewTask], list[tuple[str, str]]]:
    """The views a shard needs for ``source`` and the rows that cannot have one (with the reason). ``model`` is the
    pipeline's identity (genview.models.model_identity), part of every view's stamp."""
    source_config = generation[source]
    common = dict(model=model, source=source, **{key: generation[key] for key in STAMPED_SETTINGS})
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
        condition = dict(
            caption=row.caption if source != "ic" else None,
            source_image=_source_sha256(row.path) if source != "tc" else None,
        )
        for sample in range(generation["samples"]):
            task_seed = view_seed(seed, source, row.id, sample)
            noise_level = None if noise is None else int(noise)
            stamp = settings_stamp(
                dict(common, **condition, seed=task_seed, noise_level=noise_level, guidance_scale=float(guidance))
            )
            tasks.append(
                ViewTask(
                    id=row.id,
                    path=row.path,
                    caption=row.caption,
                    sample=sample,
                    noise_level=noise_level,
                    guidance_scale=float(guidance),
                    seed=task_seed,
                    stamp=stamp,
                    out=views_dir / f"{row.id}_{sample}_{stamp}.jpg",
                    label=row.label,
                )
            )
    return tasks, skipped


def group_by_settings(tasks: list[ViewTask]) -> list[list[ViewTask]]:
    """Tasks sharing (noise level, guidance), the pipelines' per-call scalars; in a fixed order."""
    groups: dict[tuple, list[ViewTask]] = {}
    for task in tasks:
        groups.setdefault((task.noise_level if task.noise_level is not None else -1, task.guidance_scale), []).append(
            task
        )
    return [groups[key] for key in sorted(groups)]


def view_is_complete(path: Path) -> bool:
    return path.is_file() and image_problem(path) is None


def run_pipeline(
    pipeline,
    source: str,
    tasks: list[ViewTask],
    images: list[Image.Image] | None,
    steps: int,
    with_records: bool = False,
):
    """One pipeline call for ``tasks`` (same settings), padded to PAD_MULTIPLE; returns one PIL image per task (and,
    with ``with_records``, the generator's record of each view, or None when it keeps none: a diffusion model)."""
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
    if not with_records:
        return result.images[: len(tasks)]
    records = getattr(result, "records", None)
    return result.images[: len(tasks)], records[: len(tasks)] if records else [None] * len(tasks)


def record_path(view: Path) -> Path:
    """Where a view's ground-truth record lives (generators that know it: the shapes renderer)."""
    return view.with_suffix(".json")


def save_record(record: dict, view: Path) -> None:
    with atomic_path(record_path(view)) as tmp:
        tmp.write_text(json.dumps(record))


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
    params: pd.DataFrame | None,
    views_dir: str | Path,
    out_manifest: str | Path,
    pipeline,
    generation: dict,
    seed: int,
    on_bad_image: str = "skip",
    model: dict | None = None,
) -> pd.DataFrame:
    """Generate the views of one shard that no earlier run made with the same stamp, write the manifest last (the
    workflow's output), then delete the folder's views of other stamps."""
    if source not in SOURCES:
        raise GenviewError(f"unknown view source {source!r} (sources: {', '.join(SOURCES)})")
    views_dir = Path(views_dir)
    shard = SHARD.read(shard_csv)
    tasks, skipped = plan_views(shard, params, source, generation, seed, views_dir, model)
    for stale in views_dir.glob(".*.tmp"):  # left by a killed run; never a finished view
        stale.unlink()
    todo = [task for task in tasks if not view_is_complete(task.out)]
    log.info(
        "%s %s: %d view(s) planned, %d reused from an earlier run, %d to generate, %d row(s) skipped",
        shard_csv,
        source,
        len(tasks),
        len(tasks) - len(todo),
        len(todo),
        len(skipped),
    )
    _generate_views(pipeline, source, todo, generation, on_bad_image, skipped, desc=f"{source} views of {shard_csv}")
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    manifest = _views_manifest(tasks, source, skipped_paths={path for path, _ in skipped})
    VIEWS.write(manifest, out_manifest)
    deleted = _delete_views_of_other_stamps(views_dir, manifest)
    if deleted:
        log.info("%s %s: deleted %d view(s) made under other settings", shard_csv, source, deleted)
    return manifest


def _generate_views(
    pipeline, source: str, todo: list[ViewTask], generation: dict, on_bad_image: str, skipped: list, desc: str
) -> None:
    """Generate and save the views of ``todo``, batch by batch within each group of equal settings; sources that
    cannot be read are added to ``skipped`` (or fail the job, per ``on_bad_image``). Returns once every file is
    written."""
    batch_size = generation["batch_size"]
    # Decoding sources and encoding JPEGs run in threads (PIL releases the GIL), beside the pipeline's compute.
    with (
        ThreadPoolExecutor(max_workers=IO_THREADS) as pool,
        progress(total=len(todo), desc=desc, unit="view") as bar,
    ):
        saves = []
        for group in group_by_settings(todo):
            for start in range(0, len(group), batch_size):
                batch, images = group[start : start + batch_size], None
                if source != "tc":
                    batch, images = _load_sources(batch, on_bad_image, skipped, pool)
                    if not batch:
                        continue
                views, records = run_pipeline(pipeline, source, batch, images, generation["steps"], with_records=True)
                for task, view, record in zip(batch, views, records):
                    if record is not None:  # before the view: a finished view always has its record
                        save_record(record, task.out)
                    saves.append(
                        pool.submit(save_view, view, task.out, generation["save_size"], generation["jpeg_quality"])
                    )
                bar.update(len(batch))
        for save in saves:
            save.result()  # a failed write fails the job before the manifest is written


def _views_manifest(tasks: list[ViewTask], source: str, skipped_paths: set[str]) -> pd.DataFrame:
    """The shard's view manifest: one row per planned view whose source was not skipped, with its file's size and
    SHA-256 and its ground truth."""
    return pd.DataFrame(
        [
            dict(
                id=t.id,
                view=str(t.out),
                source=source,
                sample=t.sample,
                noise_level=t.noise_level,
                guidance_scale=t.guidance_scale,
                seed=t.seed,
                stamp=t.stamp,
                bytes=t.out.stat().st_size,
                sha256=file_sha256(t.out),
                **_ground_truth(t),
            )
            for t in tasks
            if t.path not in skipped_paths
        ],
        columns=VIEWS.column_names,
    )


def _delete_views_of_other_stamps(views_dir: Path, manifest: pd.DataFrame) -> int:
    """Delete the views and records in ``views_dir`` that ``manifest`` does not list (made under other settings);
    return how many files were deleted."""
    current = {Path(view).name for view in manifest["view"]} | {record_path(Path(v)).name for v in manifest["view"]}
    stale = [path for path in views_dir.glob("*.jpg") if path.name not in current]
    stale += [path for path in views_dir.glob("*.json") if path.name not in current]
    for path in stale:
        path.unlink()
    return len(stale)


def _ground_truth(task: ViewTask) -> dict:
    """The view's record (class it shows, attributes it kept) and whether its class differs from its source's."""
    path = record_path(task.out)
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return {**record, "class_changed": bool(task.label) and record["view_label"] != task.label}


def damaged_views(manifest: pd.DataFrame, digests: bool = False) -> list[tuple[str, str]]:
    """(view, what is wrong) for each view of ``manifest`` that is missing, or whose size (and, with ``digests``,
    SHA-256) differs from what its generation job recorded. Sizes cost a ``stat`` per view; digests read every file.
    Manifests written before sizes were recorded are checked for missing views only."""
    damaged = []
    for row in manifest.reindex(columns=["view", "bytes", "sha256"]).itertuples(index=False):
        try:
            size = os.path.getsize(row.view)
        except FileNotFoundError:
            damaged.append((row.view, "missing"))
            continue
        if pd.notna(row.bytes) and size != int(row.bytes):
            damaged.append((row.view, f"{size} bytes where its generation wrote {int(row.bytes)} (truncated?)"))
        elif digests and isinstance(row.sha256, str) and row.sha256 and file_sha256(row.view) != row.sha256:
            damaged.append((row.view, "content differs from what its generation wrote (SHA-256)"))
    return damaged


def shard_manifest_of(view: str | Path) -> Path:
    """The shard view manifest that lists ``view`` (results/views/<dataset>/<source>/<shard>/<file>.jpg)."""
    return Path(view).parent.with_suffix(".manifest.csv")


def repair_advice(damaged: list[tuple[str, str]]) -> str:
    """What the user reads: the damaged views (a few), and the command that schedules exactly their shards again."""
    listed = "\n".join(f"  {view}: {problem}" for view, problem in damaged[:10])
    more = f"\n  ... and {len(damaged) - 10} more" if len(damaged) > 10 else ""
    shards = sorted({str(shard_manifest_of(view)) for view, _ in damaged})
    return (
        f"{len(damaged)} generated view(s) are damaged or missing:\n{listed}{more}\nRun `python -m genview "
        f"generation verify --repair {' '.join(shards)}` (it deletes the damaged views and their shard manifests), "
        "then the same snakemake command: it regenerates those views only (the others are reused by their stamp)"
    )


def collect_manifests(manifests: list[str | Path], out: str | Path) -> pd.DataFrame:
    """One view manifest of a (dataset, source) from its shards' manifests, in the order given.

    Training reads this one file instead of one per shard, and the workflow's DAG gets one edge per source instead
    of one per shard (the paper's CC3M has 512 shards per source).
    """
    frames = [VIEWS.read(path)[VIEWS.column_names] for path in manifests]
    collected = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=VIEWS.column_names)
    VIEWS.write(collected, out)
    log.info("%s: %d view(s) from %d shard manifest(s)", out, len(collected), len(frames))
    return collected
