import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import genview.data.index as index_module
from genview.config.load import validate_config
from genview.contracts import MANIFEST
from genview.data.images import image_problem, load_rgb
from genview.data.index import index_dataset
from genview.data.shapes import make_shapes
from genview.errors import BadInputError, ConfigError


def spec(kind, **values):
    return validate_config({"datasets": {"d": {"kind": kind, **values}}})["datasets"]["d"]


def _jpeg_bytes(mode="RGB", size=(32, 24)):
    buffer = io.BytesIO()
    colour = (10, 200, 30, 40) if mode == "CMYK" else (200, 30, 10)
    Image.new(mode, size, colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_bad_corpus(folder):
    """One file per case the indexer must accept or reject; returns (accepted names, rejected name -> reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rgb.jpg").write_bytes(_jpeg_bytes())
    (folder / "cmyk.jpg").write_bytes(_jpeg_bytes("CMYK"))
    Image.new("L", (20, 20), 99).save(folder / "grey.png")
    Image.new("P", (20, 20), 3).save(folder / "palette.png")
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(folder / "sixteen.png")
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(folder / "transparent.png")
    (folder / "truncated.jpg").write_bytes(_jpeg_bytes(size=(256, 256))[:400])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    (folder / "notes.txt").write_text("ignored: no image extension\n")
    accepted = {"rgb.jpg", "cmyk.jpg", "grey.png", "palette.png", "sixteen.png", "transparent.png"}
    rejected = {"truncated.jpg": "unreadable image", "empty.jpg": "zero-byte", "text.jpg": "not an image"}
    return accepted, rejected


def test_load_rgb_converts_every_mode(tmp_path):
    accepted, rejected = write_bad_corpus(tmp_path)
    for name in accepted:
        image = load_rgb(tmp_path / name)
        assert image.mode == "RGB", name
    assert load_rgb(tmp_path / "sixteen.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb(tmp_path / "transparent.png").getpixel((0, 0)) == (255, 255, 255)
    half = np.full((4, 4), 32768, dtype=np.uint16)
    Image.fromarray(half).save(tmp_path / "half.png")
    assert load_rgb(tmp_path / "half.png").getpixel((0, 0)) == (128, 128, 128)
    for name, reason in rejected.items():
        assert reason in image_problem(tmp_path / name), name
    assert image_problem(tmp_path / "absent.jpg") == "missing file"


def test_imagefolder_with_bad_corpus(tmp_path):
    root = tmp_path / "data"
    accepted, rejected = write_bad_corpus(root / "train" / "cats")
    Image.new("RGB", (16, 16), "red").save(root / "train" / "dogs.png")  # loose file outside class folders
    (root / "val" / "cats").mkdir(parents=True)
    Image.new("RGB", (16, 16), "blue").save(root / "val" / "cats" / "v.png")
    pd.DataFrame({"image": ["train/cats/rgb.jpg", "train/cats/ghost.jpg"], "caption": ["a cat", "none"]}).to_csv(
        root / "captions.csv", index=False
    )
    out = tmp_path / "out"
    manifest = index_dataset(
        "d",
        spec("imagefolder", root=str(root), splits={"train": "train", "test": "val"}, captions="captions.csv"),
        out,
        workers=2,
    )
    assert list(manifest.columns) == MANIFEST.column_names
    train = manifest[manifest.split == "train"]
    assert {p.split("/")[-1] for p in train.path} == accepted
    assert set(train.label) == {"cats"}
    assert (manifest.split == "test").sum() == 1
    assert manifest.set_index("path").loc[str(root / "train/cats/rgb.jpg"), "caption"] == "a cat"
    rejects = pd.read_csv(out / "rejects.csv", keep_default_na=False)
    by_name = {p.split("/")[-1]: reason for p, reason in zip(rejects.path, rejects.reason)}
    assert set(by_name) == set(rejected) | {"ghost.jpg", "notes.txt"}
    for name, reason in rejected.items():
        assert reason in by_name[name]
    assert by_name["notes.txt"] == "not an image file (.txt)"
    assert "captions CSV" in by_name["ghost.jpg"]
    assert manifest.id.is_unique
    assert pd.read_csv(out / "manifest.csv", keep_default_na=False).equals(manifest.reset_index(drop=True))


def test_dangling_links_and_unreadable_folders_are_rejects_with_a_reason(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "train" / "cats" / "deeper").mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(root / "train" / "cats" / "ok.png")
    (root / "train" / "cats" / "gone.png").symlink_to(tmp_path / "deleted.png")
    import os

    real_walk = os.walk

    def walk_with_a_locked_folder(top, onerror=None, **kwargs):  # root reads every folder, so simulate the error
        for entry in real_walk(top, onerror=onerror, **kwargs):
            if entry[0].endswith("deeper"):
                onerror(PermissionError(13, "Permission denied", entry[0]))
                continue
            yield entry

    monkeypatch.setattr("genview.data.index.os.walk", walk_with_a_locked_folder)
    manifest = index_dataset("d", spec("imagefolder", root=str(root)), tmp_path / "out")
    assert [p.split("/")[-1] for p in manifest.path] == ["ok.png"]
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", keep_default_na=False)
    reasons = dict(zip((p.split("/")[-1] for p in rejects.path), rejects.reason))
    assert reasons["gone.png"] == f"dangling symbolic link (to {tmp_path / 'deleted.png'})"
    assert reasons["deeper"] == "unreadable folder: Permission denied"


def test_policy_error_fails_naming_every_reject_and_keeps_the_list(tmp_path):
    root = tmp_path / "data"
    write_bad_corpus(root / "train" / "cats")
    out = tmp_path / "out"
    with pytest.raises(BadInputError) as error:
        index_dataset("d", spec("imagefolder", root=str(root), on_bad_image="error"), out)
    message = str(error.value)
    assert "3 bad image(s)" in message and "empty.jpg: zero-byte file" in message and "rejects.csv" in message
    assert "notes.txt" not in message, "a file that is no image is listed, not an error"
    assert len(pd.read_csv(out / "rejects.csv")) == 4
    assert not (out / "manifest.csv").exists()


def test_a_class_folder_without_a_usable_image_is_a_reject_naming_it(tmp_path):
    """A class folder that was empty, held only a .txt, or only unreadable images vanished from the index without a
    trace ("2 labels", rejects.csv empty)."""
    root = tmp_path / "data"
    for label in ("cats", "dogs"):
        (root / "train" / label).mkdir(parents=True)
        Image.new("RGB", (16, 16), "red").save(root / "train" / label / "ok.png")
    (root / "train" / "empty").mkdir()
    (root / "train" / "notes").mkdir()
    (root / "train" / "notes" / "readme.txt").write_text("no images here\n")
    (root / "train" / "broken").mkdir()
    (root / "train" / "broken" / "bad.jpg").write_bytes(b"")
    out = tmp_path / "out"
    manifest = index_dataset("d", spec("imagefolder", root=str(root)), out)
    assert set(manifest.label) == {"cats", "dogs"}
    rejects = pd.read_csv(out / "rejects.csv", keep_default_na=False)
    reasons = {str(Path(p).relative_to(root)): reason for p, reason in zip(rejects.path, rejects.reason)}
    assert reasons == {
        "train/empty": "class left out: no image file in the folder",
        "train/notes": "class left out: no image file in the folder",
        "train/notes/readme.txt": "not an image file (.txt)",
        "train/broken/bad.jpg": "zero-byte file",
        "train/broken": "class left out: none of its 1 image(s) is usable (class 'broken')",
    }
    with pytest.raises(BadInputError, match="train/empty: class left out"):
        index_dataset("d", spec("imagefolder", root=str(root), on_bad_image="error"), tmp_path / "strict")


def test_missing_split_folder_is_named(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(BadInputError, match=r"split folder .*val does not exist \(splits.test"):
        index_dataset("d", spec("imagefolder", root=str(tmp_path), splits={"train": "train", "test": "val"}), tmp_path)


def test_csv_kind(tmp_path):
    root = tmp_path / "cc"
    accepted, _ = write_bad_corpus(root / "img")
    rows = [
        ("img/rgb.jpg", "a red square", "square", "train"),
        ("img/rgb.jpg", "a second caption for the same image", "square", "train"),
        ("img/rgb.jpg", "a red square", "square", "train"),  # exact duplicate row
        ("img/grey.png", "grey", "grey", "val"),
        ("img/missing.jpg", "gone", "x", "train"),
        ("img/empty.jpg", "empty", "x", "train"),
    ]
    pd.DataFrame(rows, columns=["file", "text", "cls", "part"]).to_csv(root / "list.csv", index=False)
    out = tmp_path / "out"
    manifest = index_dataset(
        "d",
        spec(
            "csv",
            root=str(root),
            file="list.csv",
            image_column="file",
            caption_column="text",
            label_column="cls",
            split_column="part",
        ),
        out,
    )
    assert len(manifest) == 3 and manifest.id.is_unique
    assert sorted(manifest.split) == ["train", "train", "val"]
    rejects = pd.read_csv(out / "rejects.csv")
    reasons = sorted(rejects.reason)
    assert any(r.startswith("duplicate of CSV line 2 (CSV line 4)") for r in reasons)
    assert "class left out: none of its 1 image(s) is usable (class 'x')" in reasons
    assert "missing file (CSV line 6)" in reasons
    assert any(r.startswith("zero-byte") for r in reasons)


def test_csv_missing_column_is_named(tmp_path):
    pd.DataFrame({"image": ["a.jpg"]}).to_csv(tmp_path / "list.csv", index=False)
    with pytest.raises(BadInputError, match=r"missing column\(s\) \['caption'\]"):
        index_dataset("d", spec("csv", root=str(tmp_path), file="list.csv"), tmp_path / "out")


def test_ids_are_stable_across_reruns_and_root_moves(tmp_path):
    root = tmp_path / "a"
    write_bad_corpus(root / "train" / "c")
    first = index_dataset("d", spec("imagefolder", root=str(root)), tmp_path / "o1")
    shutil.copytree(root, tmp_path / "b")
    second = index_dataset("d", spec("imagefolder", root=str(tmp_path / "b")), tmp_path / "o2")
    assert list(first.id) == list(second.id)


def test_verification_resumes_from_cache(tmp_path, monkeypatch):
    root = tmp_path / "a"
    write_bad_corpus(root / "train" / "c")
    out = tmp_path / "out"
    index_dataset("d", spec("imagefolder", root=str(root)), out)
    calls = []
    real = index_module.image_problem
    monkeypatch.setattr(index_module, "image_problem", lambda path: calls.append(path) or real(path))
    again = index_dataset("d", spec("imagefolder", root=str(root)), out)
    assert calls == [] and len(again) == 6
    (root / "train" / "c" / "rgb.jpg").write_bytes(b"")  # a changed file is verified again
    again = index_dataset("d", spec("imagefolder", root=str(root)), out)
    assert calls == [str(root / "train" / "c" / "rgb.jpg")] and len(again) == 5


def test_shapes_kind_indexes_masks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_shapes("results/datasets/s", train_per_class=2, test_per_class=1)
    manifest = index_dataset("s", spec("shapes"), "results/data/s")
    assert len(manifest) == 36 and (manifest.split == "train").sum() == 24
    assert manifest["mask"].str.contains("/masks/").all() and manifest.label.nunique() == 12
    assert (manifest.caption != "").all()


def test_shapes_kind_before_generation_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match="make-shapes"):
        index_dataset("s", spec("shapes"), "out")


def _write_idx(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    code = 0x08
    header = struct.pack(">HBB", 0, code, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_in_memory_dataset_is_exported(tmp_path):
    # A real MNIST folder in torchvision's raw format, 5 train and 3 test images.
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 5), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (count, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    out = tmp_path / "out"
    manifest = index_dataset("m", spec("torchvision", name="MNIST", root=str(tmp_path / "mnist")), out)
    assert (manifest.split == "train").sum() == 5 and (manifest.split == "test").sum() == 3
    assert manifest.label.iloc[0] == "0 - zero"
    assert all(load_rgb(p).size == (28, 28) for p in manifest.path)
    assert (out / "images" / "train" / "000004.png").is_file()
    assert list(index_dataset("m", spec("torchvision", name="MNIST", root=str(tmp_path / "mnist")), out).id) == list(
        manifest.id
    )


def test_torchvision_file_dataset_uses_files_in_place(tmp_path):
    # A real DTD folder: images/<class>/<file> plus labels/<split>1.txt listing them.
    base = tmp_path / "dtd" / "dtd" / "dtd"
    lines = {"train": [], "test": []}
    for split, cls, name in [
        ("train", "banded", "b1.jpg"),
        ("train", "dotted", "d1.jpg"),
        ("test", "banded", "b2.jpg"),
    ]:
        (base / "images" / cls).mkdir(parents=True, exist_ok=True)
        (base / "images" / cls / name).write_bytes(_jpeg_bytes())
        lines[split].append(f"{cls}/{name}")
    (base / "labels").mkdir()
    for split, rows in lines.items():
        (base / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
    manifest = index_dataset("t", spec("torchvision", name="DTD", root=str(tmp_path / "dtd")), tmp_path / "out")
    assert sorted(manifest.label) == ["banded", "banded", "dotted"]
    assert all(str(base / "images") in p for p in manifest.path)
    assert not (tmp_path / "out" / "images").exists()


def test_torchvision_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no dataset class 'NoSuchSet'"):
        index_dataset("t", spec("torchvision", name="NoSuchSet", root=str(tmp_path)), tmp_path / "o")
    with pytest.raises(BadInputError, match=f"could not be opened under {tmp_path}"):
        index_dataset("t", spec("torchvision", name="CIFAR10", root=str(tmp_path)), tmp_path / "o")


# --- evaluation datasets: Karpathy split JSON, imagefolder class lists, held-out test split ---------------------


def _write_karpathy(root, *, coco=False):
    """A Karpathy split JSON with 3 images (train, restval, test), 5 captions each; the test image is missing."""
    import json

    folder = root / ("val2014" if coco else "")
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for number, (filename, split) in enumerate([("a.jpg", "train"), ("b.jpg", "restval"), ("c.jpg", "test")]):
        if filename != "c.jpg":
            (folder / filename).write_bytes(_jpeg_bytes())
        entry = {
            "filename": filename,
            "imgid": number,
            "split": split,
            "sentences": [{"raw": f"caption {k} of {filename} ", "tokens": []} for k in range(5)],
        }
        if coco:
            entry["filepath"] = "val2014"
        images.append(entry)
    (root / "dataset.json").write_text(json.dumps({"images": images, "dataset": "x"}))


@pytest.mark.parametrize("coco", [False, True])
def test_karpathy_kind(tmp_path, coco):
    root = tmp_path / "flickr"
    _write_karpathy(root, coco=coco)
    out = tmp_path / "out"
    manifest = index_dataset("f", spec("karpathy", root=str(root), file="dataset.json"), out)
    assert list(manifest.columns) == MANIFEST.column_names
    assert len(manifest) == 10 and manifest.id.is_unique
    assert set(manifest.split) == {"train"}  # train + restval; the only test image is missing
    prefix = "val2014/" if coco else ""
    assert sorted(set(manifest.label)) == [f"{prefix}a.jpg", f"{prefix}b.jpg"]
    assert (manifest.groupby("label").size() == 5).all()
    assert manifest.caption.iloc[0] == "caption 0 of a.jpg"  # trimmed
    assert all(p == str(root / label) for p, label in zip(manifest.path, manifest.label))
    rejects = pd.read_csv(out / "rejects.csv")
    assert list(rejects.reason) == ["missing file"] and list(rejects.split) == ["test"]
    assert rejects.path.iloc[0].endswith(f"{prefix}c.jpg")
    # ids depend on (relative path, caption) only: same ids from a moved root
    shutil.copytree(root, tmp_path / "moved")
    again = index_dataset("f", spec("karpathy", root=str(tmp_path / "moved"), file="dataset.json"), tmp_path / "o2")
    assert list(again.id) == list(manifest.id)


def test_karpathy_custom_splits_and_absolute_file(tmp_path):
    root = tmp_path / "coco"
    _write_karpathy(root)
    manifest = index_dataset(
        "c",
        spec(
            "karpathy", root=str(root), file=str(root / "dataset.json"), splits={"train": ["train"], "val": ["restval"]}
        ),
        tmp_path / "out",
    )
    assert manifest.groupby("split").size().to_dict() == {"train": 5, "val": 5}
    assert pd.read_csv(tmp_path / "out" / "rejects.csv").empty  # the test image is not asked for
    with pytest.raises(BadInputError, match="not found"):
        index_dataset("c", spec("karpathy", root=str(root), file="nope.json"), tmp_path / "o2")
    with pytest.raises(ConfigError, match="'file' is a required property"):
        spec("karpathy", root=str(root))


def _class_tree(root, classes, per_class=2, splits=("train",)):
    for split in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                Image.new("RGB", (8, 8), (k * 40, 0, 0)).save(root / split / name / f"{k}.png")


def test_imagefolder_class_list(tmp_path):
    root = tmp_path / "imagenet"
    _class_tree(root, ["n01", "n02", "n03", "n04"], splits=("train", "val"))
    splits = {"train": "train", "test": "val"}
    manifest = index_dataset(
        "i", spec("imagefolder", root=str(root), splits=splits, classes=["n03", "n01"]), tmp_path / "o1"
    )
    assert sorted(set(manifest.label)) == ["n01", "n03"] and len(manifest) == 8
    (root / "in100.txt").write_text("# ImageNet-100\nn02 some name\n\nn04\n")
    manifest = index_dataset(
        "i", spec("imagefolder", root=str(root), splits=splits, classes="in100.txt"), tmp_path / "o2"
    )
    assert sorted(set(manifest.label)) == ["n02", "n04"]
    absolute = tmp_path / "list.txt"
    absolute.write_text("n04\n")
    manifest = index_dataset("i", spec("imagefolder", root=str(root), classes=str(absolute)), tmp_path / "o3")
    assert set(manifest.label) == {"n04"} and len(manifest) == 2


def test_imagefolder_missing_listed_class_is_named(tmp_path):
    root = tmp_path / "imagenet"
    _class_tree(root, ["n01", "n02"])
    with pytest.raises(BadInputError, match=r"missing from split folder .*train.*\['n09'\]"):
        index_dataset("i", spec("imagefolder", root=str(root), classes=["n01", "n09"]), tmp_path / "o")
    with pytest.raises(BadInputError, match="class list file .*absent.txt not found"):
        index_dataset("i", spec("imagefolder", root=str(root), classes="absent.txt"), tmp_path / "o")
    with pytest.raises(ConfigError, match="holdout"):
        spec("imagefolder", root=str(root), holdout=1.5)


def test_holdout_split(tmp_path):
    root = tmp_path / "caltech"
    sizes = {"big": 60, "mid": 25, "small": 2, "single": 1}
    for name, count in sizes.items():
        _class_tree(root, [name], per_class=count)
    settings = dict(root=str(root), holdout=0.2)
    manifest = index_dataset("c", spec("imagefolder", **settings), tmp_path / "o1")
    assert len(manifest) == sum(sizes.values())
    counts = manifest.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert counts.loc["big", "test"] == 12 and counts.loc["mid", "test"] == 5  # per class, rounded
    assert (counts["train"] >= 1).all()  # every class keeps a train image
    assert abs(counts["test"].sum() / len(manifest) - 0.2) < 0.05
    # deterministic: same split on a rerun, from a moved root and with another worker count
    shutil.copytree(root, tmp_path / "moved")
    again = index_dataset(
        "c", spec("imagefolder", **{**settings, "root": str(tmp_path / "moved")}), tmp_path / "o2", workers=2
    )
    assert list(zip(again.id, again.split)) == list(zip(manifest.id, manifest.split))
    other = index_dataset("c", spec("imagefolder", **settings, holdout_seed=1), tmp_path / "o3")
    assert set(other.id[other.split == "test"]) != set(manifest.id[manifest.split == "test"])
    assert (other.split == "test").sum() == (manifest.split == "test").sum()
    plain = index_dataset("c", spec("imagefolder", root=str(root)), tmp_path / "o4")
    assert set(plain.split) == {"train"}


def test_holdout_keeps_captions_of_an_image_together():
    rows = [
        dict(id=f"{image}-{k}", path=f"/d/{image}.jpg", caption=str(k), label=f"{image}.jpg", split="train", mask="")
        for image in range(50)
        for k in range(5)
    ]
    rows.append(dict(id="v", path="/d/v.jpg", caption="", label="v.jpg", split="val", mask=""))
    moved = index_module.apply_holdout(rows, 0.3, seed=0, stratify=False)
    assert moved == 15 * 5
    by_image = {}
    for row in rows:
        by_image.setdefault(row["path"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_image.values())
    assert by_image["/d/v.jpg"] == {"val"}
