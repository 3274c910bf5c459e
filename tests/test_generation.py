import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import generation_views_args, genview_command, indexed_shapes, pretrain_run_args
from PIL import Image

from genview.config.load import validate_config
from genview.contracts import VIEWS
from genview.errors import BadInputError
from genview.generation.views import collect_manifests, generate_shard, group_by_settings, plan_views, view_seed
from genview.models.diffusion import build_tiny_pipeline, load_pipeline

CONFIG = validate_config({"generation": {"steps": 2, "batch_size": 8, "save_size": 32}})
GENERATION = CONFIG["generation"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny pipelines, a 12-image shard of `shapes` and its params (every noise level and guidance occurs)."""
    root = tmp_path_factory.mktemp("gen")
    manifest = indexed_shapes(root, train_per_class=1)
    shard = manifest[manifest.split == "train"].copy()
    shard.to_csv(root / "shard.csv", index=False)
    params = pd.DataFrame(
        {
            "id": shard.id,
            "noise_level": [(i % 5) * 100 for i in range(len(shard))],
            "guidance_scale": [(2, 4, 6, 8)[i % 4] for i in range(len(shard))],
        }
    )
    params.to_csv(root / "params.csv", index=False)
    for role in ("unclip", "text2img"):
        build_tiny_pipeline(role, root / role)
    pipelines = {role: load_pipeline(role, {"path": str(root / role)}) for role in ("unclip", "text2img")}
    return dict(root=root, shard=shard, params=params, pipelines=pipelines)


def generate(tiny, source, out, shard=None, **overrides):
    shard_csv = tiny["root"] / "shard.csv"
    if shard is not None:
        shard_csv = out.parent / f"{out.name}.shard.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        shard.to_csv(shard_csv, index=False)
    return generate_shard(
        source=source,
        shard_csv=shard_csv,
        params=pd.read_csv(tiny["root"] / "params.csv", dtype={"id": str}),
        views_dir=out,
        out_manifest=out.parent / f"{out.name}.manifest.csv",
        pipeline=tiny["pipelines"]["text2img" if source == "tc" else "unclip"],
        generation={**GENERATION, **overrides},
        seed=0,
    )


def digests(manifest):
    return {row.id: hashlib.sha256(Path(row.view).read_bytes()).hexdigest() for row in manifest.itertuples()}


def test_view_seed_recomputed_plainly():
    expected = int.from_bytes(hashlib.sha256(b"7/itc/abc/2").digest()[:8], "big") & (2**63 - 1)
    assert view_seed(7, "itc", "abc", 2) == expected
    assert len({view_seed(0, s, i, k) for s in ("ic", "tc") for i in ("a", "b") for k in (0, 1)}) == 8


def test_plan_uses_adaptive_and_fixed_settings(tiny, tmp_path):
    shard, params = tiny["shard"], tiny["params"]
    tasks, skipped = plan_views(shard, params, "itc", GENERATION, 0, tmp_path)
    assert not skipped and [t.noise_level for t in tasks] == list(params.noise_level)
    assert [t.guidance_scale for t in tasks] == list(params.guidance_scale)
    fixed = {**GENERATION, "ic": {"guidance_scale": 10, "noise_level": 300}}
    tasks, _ = plan_views(shard, None, "ic", fixed, 0, tmp_path)
    assert {(t.noise_level, t.guidance_scale) for t in tasks} == {(300, 10.0)}
    tasks, _ = plan_views(shard, params, "ic", {**GENERATION, "samples": 2}, 0, tmp_path)
    assert len(tasks) == 2 * len(shard) and len({t.out for t in tasks}) == len(tasks)
    groups = group_by_settings(tasks)
    assert all(len({(t.noise_level, t.guidance_scale) for t in g}) == 1 for g in groups)


def test_plan_skips_rows_without_caption_or_params(tiny, tmp_path):
    shard = tiny["shard"].copy()
    shard.loc[shard.index[0], "caption"] = ""
    tasks, skipped = plan_views(shard, tiny["params"], "tc", GENERATION, 0, tmp_path)
    assert len(tasks) == len(shard) - 1 and "no caption" in skipped[0][1]
    tasks, skipped = plan_views(shard, tiny["params"].iloc[1:], "ic", GENERATION, 0, tmp_path)
    assert len(skipped) == 1 and "no adaptive parameter" in skipped[0][1]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["ic", "tc", "itc"])
def test_views_identical_whatever_batch_size_shard_split_and_resume_point(tiny, tmp_path, source):
    reference = generate(tiny, source, tmp_path / "a")
    assert len(reference) == len(tiny["shard"]) and all(Image.open(v).size == (32, 32) for v in reference.view)
    expected = digests(reference)
    assert digests(generate(tiny, source, tmp_path / "b", batch_size=3)) == expected
    assert digests(generate(tiny, source, tmp_path / "c", batch_size=1)) == expected
    shard = tiny["shard"]
    halves = [
        generate(tiny, source, tmp_path / f"s{i}", shard=part)
        for i, part in enumerate((shard.iloc[::2], shard.iloc[1::2]))
    ]
    assert {**digests(halves[0]), **digests(halves[1])} == expected
    for view in list(reference.view)[::3]:  # resume: a third of the views were never written
        Path(view).unlink()
    assert digests(generate(tiny, source, tmp_path / "a")) == expected


@pytest.mark.slow
def test_corrupt_view_is_regenerated_and_finished_ones_are_reused(tiny, tmp_path, caplog):
    first = generate(tiny, "ic", tmp_path / "v")
    views = list(first.view)
    Path(views[0]).write_bytes(Path(views[0]).read_bytes()[:50])  # a truncated JPEG
    stamps = {v: os.stat(v).st_mtime_ns for v in views[1:]}
    caplog.set_level("INFO")
    again = generate(tiny, "ic", tmp_path / "v")
    assert f"{len(views) - 1} reused" in caplog.text and "1 to generate" in caplog.text
    assert digests(again) == digests(first)
    assert {v: os.stat(v).st_mtime_ns for v in views[1:]} == stamps


@pytest.mark.slow
def test_changed_settings_regenerate_exactly_the_views_they_change(tiny, tmp_path, caplog):
    """Views are stamped with their settings: a new analysis (other noise levels for some images) regenerates those
    views only, a new model or step count regenerates all; no view of the old settings survives in the manifest or
    on disk."""
    params = tiny["params"]
    caplog.set_level("INFO")
    first = generate(tiny, "ic", tmp_path / "v")
    assert first.stamp.str.len().eq(16).all() and all(s in v for s, v in zip(first.stamp, first.view))
    changed = params.copy()
    changed.loc[:2, "noise_level"] = (changed.loc[:2, "noise_level"] + 100) % 500  # 3 images get another level
    changed.to_csv(tmp_path / "params.csv", index=False)
    caplog.clear()
    second = generate_shard(
        source="ic",
        shard_csv=tiny["root"] / "shard.csv",
        params=pd.read_csv(tmp_path / "params.csv", dtype={"id": str}),
        views_dir=tmp_path / "v",
        out_manifest=tmp_path / "v.manifest.csv",
        pipeline=tiny["pipelines"]["unclip"],
        generation=GENERATION,
        seed=0,
    )
    assert f"{len(first) - 3} reused from an earlier run, 3 to generate" in caplog.text
    assert "deleted 3 view(s) made under other settings" in caplog.text
    moved = set(changed.id[:3])
    kept = first[~first.id.isin(moved)]
    assert set(second.view) & set(first.view) == set(kept.view)  # unchanged views keep their file
    assert sorted(p.name for p in (tmp_path / "v").glob("*.jpg")) == sorted(Path(v).name for v in second.view)
    caplog.clear()
    third = generate(tiny, "ic", tmp_path / "v", steps=3)  # every view depends on the step count
    assert "0 reused from an earlier run" in caplog.text and not set(third.view) & set(second.view)
    other_model = generate_shard(
        source="ic",
        shard_csv=tiny["root"] / "shard.csv",
        params=pd.read_csv(tiny["root"] / "params.csv", dtype={"id": str}),
        views_dir=tmp_path / "m",
        out_manifest=tmp_path / "m.manifest.csv",
        pipeline=tiny["pipelines"]["unclip"],
        generation=GENERATION,
        seed=0,
        model={"role": "unclip", "path": "other/model"},
    )
    assert not set(other_model.stamp) & set(first.stamp)


@pytest.mark.slow
def test_unreadable_source_follows_the_policy(tiny, tmp_path):
    shard = tiny["shard"].copy()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    shard.loc[shard.index[0], "path"] = str(bad)
    with pytest.raises(BadInputError, match=f"source image {bad}"):
        generate_shard(
            source="ic",
            shard_csv=_csv(shard, tmp_path),
            params=pd.read_csv(tiny["root"] / "params.csv", dtype={"id": str}),
            views_dir=tmp_path / "e",
            out_manifest=tmp_path / "e.csv",
            pipeline=tiny["pipelines"]["unclip"],
            generation=GENERATION,
            seed=0,
            on_bad_image="error",
        )
    assert not (tmp_path / "e.csv").exists()
    manifest = generate_shard(
        source="ic",
        shard_csv=_csv(shard, tmp_path),
        params=pd.read_csv(tiny["root"] / "params.csv", dtype={"id": str}),
        views_dir=tmp_path / "k",
        out_manifest=tmp_path / "k.csv",
        pipeline=tiny["pipelines"]["unclip"],
        generation=GENERATION,
        seed=0,
    )
    assert len(manifest) == len(shard) - 1 and shard.id.iloc[0] not in set(manifest.id)


def _csv(frame, folder):
    path = folder / "shard_variant.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_killed_generation_resumes_without_redoing_finished_views(tiny, tmp_path):
    """A real SIGKILL part-way through a shard; the rerun completes it and reuses every finished view."""
    out, views = tmp_path / "views.manifest.csv", tmp_path / "views"
    command = genview_command(
        *generation_views_args(
            "ic",
            tiny["root"] / "shard.csv",
            views,
            out,
            {**GENERATION, "batch_size": 1, "steps": 12},
            {"path": str(tiny["root"] / "unclip")},
            "--device",
            "cpu",
            foreground=tiny["root"] / "params.csv",
        )
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(views.glob("*.jpg"))) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in views.glob("*.jpg")}
    assert 3 <= len(finished) < len(tiny["shard"]), "the kill must land part-way through the shard"
    assert not out.exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (
        f"{len(finished)} reused from an earlier run, {len(tiny['shard']) - len(finished)} to generate" in rerun.stderr
    )
    for path, (mtime, data) in finished.items():
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == data
    manifest = pd.read_csv(out)
    assert len(manifest) == len(tiny["shard"]) and all(Image.open(v).size == (32, 32) for v in manifest.view)
    assert not list(views.glob(".*.tmp"))


def test_collected_manifest_is_the_shards_in_order(tmp_path):
    columns = ["id", "view", "source", "sample", "noise_level", "guidance_scale", "seed", "stamp"]
    shards = []
    for shard in range(3):
        path = tmp_path / f"{shard}.manifest.csv"
        row = [f"0{shard}", f"v{shard}.jpg", "ic", 0, 100, 10.0, shard, f"s{shard}"]
        pd.DataFrame([row], columns=columns).to_csv(path, index=False)
        shards.append(path)
    collected = collect_manifests(shards, tmp_path / "ic.manifest.csv")
    assert collected["id"].tolist() == ["00", "01", "02"]  # ids stay strings
    assert VIEWS.read(tmp_path / "ic.manifest.csv").equals(collected)
    (tmp_path / "bad.csv").write_text("id,view\n1,a.jpg\n")
    with pytest.raises(BadInputError, match=r"bad.csv: not a view manifest \(missing column"):
        collect_manifests([tmp_path / "bad.csv"], tmp_path / "x.csv")


@pytest.mark.slow
def test_a_damaged_view_is_named_before_training_and_verify_repairs_exactly_its_shard(tiny, tmp_path, capsys):
    """A truncated or deleted view went unnoticed until the training that drew it crashed without a file name."""
    from genview.cli import main

    shard_dir = tmp_path / "results/views/s/ic/0"
    first = generate(tiny, "ic", shard_dir)
    collected = tmp_path / "results/views/s/ic.manifest.csv"
    collect_manifests([shard_dir.with_suffix(".manifest.csv")], collected)
    truncated, deleted, altered = first.view[0], first.view[1], first.view[2]
    Path(truncated).write_bytes(Path(truncated).read_bytes()[:50])
    Path(deleted).unlink()
    content = bytearray(Path(altered).read_bytes())
    content[-3] ^= 0xFF  # same size, other bytes: only the digest sees it
    Path(altered).write_bytes(bytes(content))
    train = pretrain_run_args("{}", tmp_path / "results/pretrain/x", "unused.csv", "--device", "cpu", views=collected)
    assert main(train) == 2
    error = capsys.readouterr().err
    assert "2 generated view(s) are damaged or missing" in error
    assert f"{truncated}: 50 bytes where its generation wrote" in error and f"{deleted}: missing" in error
    assert f"generation verify --repair {shard_dir.with_suffix('.manifest.csv')}" in error
    assert not (tmp_path / "results/pretrain/x/metrics.jsonl").exists()
    assert main(["generation", "verify", str(collected)]) == 2
    assert f"{altered}: content differs" in capsys.readouterr().err
    assert main(["generation", "verify", "--repair", str(collected)]) == 0
    assert not shard_dir.with_suffix(".manifest.csv").exists(), "its generation job is scheduled again"
    untouched = {v: os.stat(v).st_mtime_ns for v in first.view[3:]}
    again = generate(tiny, "ic", shard_dir)  # what the rerun's job does
    assert digests(again) == digests(first)
    assert {v: os.stat(v).st_mtime_ns for v in first.view[3:]} == untouched, "the whole views are reused"
