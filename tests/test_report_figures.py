"""Figures, the cost table and table-spec files: outputs exist, open, have the expected panels, and repeat."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from genview.errors import BadInputError, ConfigError
from genview.report.cost import cost_table, read_benchmarks, render_cost
from genview.report.gallery import image_gallery, spread_rows, text_gallery
from genview.report.quality_audit import quality_audit
from genview.report.specs import check_sources, load_table_specs
from genview.report.tsne import choose_classes, select_points, tsne_figure

REPO = Path(__file__).resolve().parents[1]


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def feature_cache(path, seed, separation):
    """A feature cache of 12 classes x 10 test images; classes are Gaussian blobs ``separation`` apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(12), 10)
    centres = rng.normal(size=(12, 16)) * separation
    features = (centres[labels] + rng.normal(size=(len(labels), 16))).astype(np.float32)
    names = np.array([f"class{i}" for i in range(12)])
    np.savez(
        path,
        label_names=names,
        class_names=names,
        **{
            "test/features": features,
            "test/labels": labels,
            "test/ids": np.array([f"i{i}" for i in range(len(labels))]),
            "test/paths": np.array(["p"] * len(labels)),
            "test/captions": np.array([""] * len(labels)),
        },
    )
    return path


@pytest.mark.slow
def test_tsne_triptych_same_seed_same_bytes(tmp_path):
    panels = [
        (label, feature_cache(tmp_path / f"{label}.npz", 0, separation))
        for label, separation in (("baseline", 0.1), ("+ views", 1.0), ("GenView++", 5.0))
    ]
    first = tsne_figure(
        panels, tmp_path / "a.png", tmp_path / "a.csv", splits=["test"], classes=9, per_class=6, seed=3, title="t-SNE"
    )
    tsne_figure(panels, tmp_path / "b.png", tmp_path / "b.csv", splits=["test"], classes=9, per_class=6, seed=3)
    assert list(first["panel"].unique()) == ["baseline", "+ views", "GenView++"]
    assert first.groupby("panel")["label"].nunique().eq(9).all() and len(first) == 3 * 9 * 6
    # Every panel shows the same images; the better separated features get the higher silhouette.
    assert first.groupby("panel")["id"].apply(tuple).nunique() == 1
    silhouettes = first.groupby("panel", sort=False)["silhouette"].first().tolist()
    assert silhouettes == sorted(silhouettes)
    image = Image.open(tmp_path / "a.png")
    assert image.width > 2.5 * image.height  # three square panels side by side
    assert digest(tmp_path / "a.csv") == digest(tmp_path / "b.csv")
    tsne_figure(
        panels, tmp_path / "c.png", tmp_path / "c.csv", splits=["test"], classes=9, per_class=6, seed=3, title="t-SNE"
    )
    assert digest(tmp_path / "a.png") == digest(tmp_path / "c.png")
    other = tsne_figure(panels, tmp_path / "d.png", tmp_path / "d.csv", splits=["test"], classes=9, per_class=6, seed=4)
    assert set(other["label"]) != set(first["label"])


def test_tsne_classes_and_points_are_seeded_and_balanced():
    labels = np.repeat(np.arange(12), 10)
    classes = choose_classes(labels, 9, seed=0)
    assert len(classes) == 9 and list(classes) == sorted(classes)
    assert np.array_equal(classes, choose_classes(labels, 9, seed=0))
    points = select_points(labels, classes, per_class=4, seed=0)
    assert np.bincount(labels[points], minlength=12)[classes].tolist() == [4] * 9
    with pytest.raises(BadInputError, match="asks for 13 classes, but the features have only 12"):
        choose_classes(labels, 13, seed=0)


def test_tsne_panels_must_show_the_same_images(tmp_path):
    a = feature_cache(tmp_path / "a.npz", 0, 1.0)
    b = tmp_path / "b.npz"
    arrays = dict(np.load(a))
    arrays["test/ids"] = arrays["test/ids"][::-1]
    np.savez(b, **arrays)
    with pytest.raises(BadInputError, match="its images differ"):
        tsne_figure([("a", a), ("b", b)], tmp_path / "x.png", tmp_path / "x.csv", splits=["test"], per_class=5)


class FakePipeline:
    """Records each call; returns one image per generator, coloured by its seed and the call's scalars."""

    def __init__(self):
        self.calls = []

    def __call__(self, *, generator, guidance_scale, noise_level=None, **kwargs):
        self.calls.append(dict(noise_level=noise_level, guidance_scale=guidance_scale, count=len(generator)))
        images = []
        for g in generator:
            value = int(torch.randint(0, 255, (1,), generator=g)) ^ int(noise_level or 0) % 256
            images.append(Image.new("RGB", (16, 16), (value, int(guidance_scale * 20) % 256, 0)))
        return type("Result", (), {"images": images})()


def gallery_rows(tmp_path):
    rows = []
    for index, (ratio, complexity) in enumerate([(0.1, 1), (0.5, 2), (0.9, 4), (0.3, 3)]):
        path = tmp_path / f"img{index}.png"
        Image.new("RGB", (24, 20), (40 * index, 90, 200)).save(path)
        rows.append(
            dict(
                id=f"id{index}",
                path=str(path),
                caption="a red circle" * complexity,
                fg_ratio=ratio,
                noise_level=int(ratio * 5) * 100 if ratio < 0.8 else 400,
                complexity=complexity,
                guidance_scale={1: 8, 2: 6, 3: 4, 4: 2}[complexity],
            )
        )
    return pd.DataFrame(rows)


def test_gallery_figures_have_every_level_and_repeat(tmp_path):
    rows = gallery_rows(tmp_path)
    chosen = spread_rows(rows, "fg_ratio", 3)
    assert chosen["fg_ratio"].tolist() == [0.1, 0.5, 0.9]  # smallest, middle and largest foreground
    masks = [np.eye(4, dtype=bool)] * 3
    for name in ("a", "b"):
        pipeline = FakePipeline()
        image_gallery(
            chosen,
            masks,
            pipeline,
            noise_levels=[0, 100, 200, 300, 400],
            guidance_scale=10,
            steps=2,
            seed=0,
            out_png=tmp_path / f"ic_{name}.png",
            title="IC",
        )
        # One call per level, each with the three images (a call takes one noise level for all its images).
        assert [(call["noise_level"], call["count"]) for call in pipeline.calls] == [
            (level, 8) for level in (0, 100, 200, 300, 400)
        ]
        text_gallery(
            spread_rows(rows, "complexity", 2),
            FakePipeline(),
            guidance_scales=[2, 4, 6, 8],
            steps=2,
            seed=0,
            out_png=tmp_path / f"tc_{name}.png",
            title="TC",
        )
    assert digest(tmp_path / "ic_a.png") == digest(tmp_path / "ic_b.png")
    assert digest(tmp_path / "tc_a.png") == digest(tmp_path / "tc_b.png")
    ic = Image.open(tmp_path / "ic_a.png")
    assert ic.width > 1.8 * ic.height  # 3 rows of 7 panels: source, mask, five levels


class FakeScorer:
    image_size = (8, 8)

    def pair_quality(self, real, views):
        return (views.mean(dim=(1, 2, 3)) - real.mean(dim=(1, 2, 3))).float()


def test_quality_audit_scores_every_source_and_ranks_pairs(tmp_path):
    real, views = [], {"ic": [], "tc": []}
    for index in range(6):
        path = tmp_path / f"r{index}.png"
        Image.new("RGB", (8, 8), (100, 100, 100)).save(path)
        real.append(dict(id=f"id{index}", path=str(path), split="train"))
        for offset, source in ((0, "ic"), (50, "tc")):
            view = tmp_path / f"{source}{index}.jpg"
            Image.new("RGB", (8, 8), (index * 20 + offset,) * 3).save(view)
            views[source].append(dict(id=f"id{index}", view=str(view), source=source, sample=0))
    pd.DataFrame(real).to_csv(tmp_path / "manifest.csv", index=False)
    manifests = []
    for source, rows in views.items():
        pd.DataFrame(rows).to_csv(tmp_path / f"{source}.csv", index=False)
        manifests.append(tmp_path / f"{source}.csv")
    pairs = quality_audit(
        manifests,
        tmp_path / "manifest.csv",
        FakeScorer(),
        tmp_path / "q.png",
        tmp_path / "q.csv",
        sample=4,
        extremes=2,
        seed=0,
    )
    assert pairs.groupby("source").size().to_dict() == {"ic": 4, "tc": 4}
    assert pairs.loc[pairs.source == "tc", "quality"].mean() > pairs.loc[pairs.source == "ic", "quality"].mean()
    assert pd.read_csv(tmp_path / "q.csv").shape[0] == 8 and Image.open(tmp_path / "q.png").width > 0
    again = quality_audit(
        manifests,
        tmp_path / "manifest.csv",
        FakeScorer(),
        tmp_path / "q2.png",
        tmp_path / "q2.csv",
        sample=4,
        extremes=2,
        seed=0,
    )
    assert again.equals(pairs) and digest(tmp_path / "q.png") == digest(tmp_path / "q2.png")


def test_cost_table_from_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    files = {
        "generate_views/shapes/ic/0.tsv": 36.0,
        "generate_views/shapes/ic/1.tsv": 72.0,
        "pretrain/e1.tsv": 360.0,
        "pretrain/e2.tsv": 720.0,
        "evaluate/knn/e1/shapes.tsv": 10.0,
        "evaluate/linear/e1/shapes.tsv": 36.0,
    }
    for name, seconds in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(header + f"{seconds}\t0:00:00\t100.5\t1\t1\t1\t0\t0\t0\t1\n")
    gpus = {"generate_views": 1, "pretrain": {"e1": 1, "e2": 4}, "evaluate": {"knn": 0, "linear": 1}}
    table = cost_table(read_benchmarks(tmp_path, gpus), ["generate_views", "pretrain", "evaluate"])
    assert table["stage"].tolist() == ["generate_views", "pretrain", "evaluate", "total"]
    assert table["jobs"].tolist() == [2, 2, 2, 6]
    assert table["gpu_hours"].round(6).tolist() == [0.03, 0.9, 0.01, 0.94]
    assert table["wall_hours"].iloc[-1] == pytest.approx(sum(files.values()) / 3600)
    assert "| pretrain | 2 | 0.300 | 540.0 | 720.0 | 100 | 0.900 |" in render_cost(table)
    (tmp_path / "evaluate/broken.tsv").write_text("not a benchmark\n")
    with pytest.raises(BadInputError, match="broken.tsv: not a Snakemake benchmark file"):
        read_benchmarks(tmp_path, gpus)


@pytest.mark.parametrize("path", ["config/tables.yaml", "config/tables_default.yaml"])
def test_shipped_table_specs_load(path):
    specs = load_table_specs(REPO / path)
    assert specs and all(spec["rows"] for spec in specs.values())


def test_table_spec_errors_name_the_file_table_and_cell(tmp_path):
    path = tmp_path / "tables.yaml"
    path.write_text("t:\n  title: T\n  columns: [{key: a, label: A, colour: red}]\n  rows: [{label: r}]\n")
    with pytest.raises(ConfigError, match=r"(?s)tables.yaml is invalid.*t\.columns\.0\.colour: unknown key"):
        load_table_specs(path)
    path.write_text(
        "t:\n  title: T\n  cell: {protocol: knn, dataset: d, metric: top1}\n"
        "  columns: [{key: a, label: A}]\n  rows: [{label: r, cell: {experiment: e}}]\n"
    )
    specs = load_table_specs(path)
    check_sources(specs, [("e", "knn", "d")], path)
    with pytest.raises(
        ConfigError, match=r"1 table cell\(s\) cannot be filled:\n  - table t: e/knn/d is not evaluated"
    ):
        check_sources(specs, [("e", "linear", "d")], path)
