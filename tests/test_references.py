"""The learning references of a table: raw pixels (backbone `pixels`) and the same backbone trained with labels
(method `supervised`), from the data pipeline through the training loop."""

import pandas as pd
import pytest
import torch
from helpers import indexed_shapes, one_experiment_config

from genview.errors import GenviewError
from genview.training.backbones import build_backbone
from genview.training.data import PretrainDataset
from genview.training.experiments import resolve_all
from genview.training.network import build_model
from genview.training.train import train


def test_pixels_backbone_returns_the_flattened_image():
    backbone, dim = build_backbone({"name": "pixels", "size": 8})
    images = torch.rand(2, 3, 8, 8)
    assert dim == 3 * 8 * 8 and not list(backbone.parameters())
    assert torch.equal(backbone(images), images.reshape(2, -1))
    # Another input size is pooled to size x size: each feature is the mean of its block.
    pooled = backbone(images.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    assert torch.allclose(pooled, images.reshape(2, -1))


def config(method="supervised", variant="baseline", method_args=None, backbone=None):
    return one_experiment_config(
        method,
        {"epochs": 1, "batch_size": 8, "lr": 0.001, "optimizer": "adamw", "image_size": 16},
        backbone or {"name": "convnet", "width": 8, "depth": 2},
        variant=variant,
        method_args=method_args,
    )


def test_the_network_of_a_pixels_experiment_is_the_normalised_image():
    experiments, _, problems = resolve_all(
        config(
            "simclr",
            method_args={"simclr": {"proj_hidden_dim": 8, "proj_dim": 4}},
            backbone={"name": "pixels", "size": 16},
        )
    )
    assert not problems
    model = build_model(experiments["e"])
    images = torch.rand(2, 3, 16, 16)
    normalised = (images - model.backbone[0].mean) / model.backbone[0].std
    assert torch.allclose(model.backbone(images), normalised.reshape(2, -1))


def test_supervised_is_baseline_only_and_needs_its_number_of_classes():
    experiments, _, problems = resolve_all(config(method_args={"supervised": {"num_classes": 12}}))
    assert not problems and experiments["e"]["method"] == "supervised"
    _, _, problems = resolve_all(config(variant="views", method_args={"supervised": {"num_classes": 12}}))
    assert any("variant baseline only, got 'views'" in problem for problem in problems)
    _, _, problems = resolve_all(config())
    assert any("method_args.supervised.num_classes: the training split's number of classes" in p for p in problems)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("references")
    indexed_shapes(root, train_per_class=1)
    return root


def test_supervised_samples_are_a_view_and_the_class_index(shapes):
    rows = pd.read_csv(shapes / "manifest.csv", dtype=str, keep_default_na=False)
    rows = rows[rows.split == "train"].iloc[::-1]  # not in label order: indices follow the sorted labels
    dataset = PretrainDataset(
        rows, mode="supervised", augmentation_preset="plain", image_size=16, min_scale=1.0, seed=0
    )
    classes = sorted(set(rows.label))
    for index in range(len(dataset)):
        view, label, returned = dataset[index]
        assert view.shape == (3, 16, 16) and returned == index
        assert classes[label] == rows.label.iloc[index]


def test_supervised_trains_through_the_loop_and_checks_the_classes(shapes, tmp_path):
    experiments, _, _ = resolve_all(config(method_args={"supervised": {"num_classes": 12}}))
    run = dict(manifest=str(shapes / "manifest.csv"), view_manifests=[], execution={"num_workers": 0})
    train(experiments["e"], tmp_path / "ok", **run)
    checkpoint = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)
    assert checkpoint["steps"] == 1 and checkpoint["method"]["head.weight"].shape == (12, 16)  # width 8, 2 blocks
    experiments, _, _ = resolve_all(config(method_args={"supervised": {"num_classes": 5}}))
    with pytest.raises(GenviewError, match="has 12 classes, more than method_args.supervised.num_classes"):
        train(experiments["e"], tmp_path / "few", **run)


@pytest.fixture(scope="module")
def four_shapes(tmp_path_factory):
    """Large plain shapes of 4 classes at 32 px (30 training and 15 test images each), as (images, labels) per split
    from the supervised data pipeline."""
    from genview.data.shapes import ShapesStyle, make_shapes

    root = tmp_path_factory.mktemp("four_shapes")
    style = ShapesStyle.from_spec(
        {"sizes": ["large"], "textures": ["plain"], "background_texture_probability": 0.0, "outline_probability": 0.0}
        | {"rotation": 0}
    )
    rows = make_shapes(root, image_size=32, train_per_class=30, test_per_class=15, style=style)
    rows = rows[rows.label.isin(sorted(set(rows.label))[:4])].assign(path=lambda r: [str(root / p) for p in r.image])
    splits = {}
    for split, frame in rows.groupby("split"):
        dataset = PretrainDataset(
            frame, mode="supervised", augmentation_preset="plain", image_size=32, min_scale=1.0, seed=0
        )
        samples = [dataset[index] for index in range(len(dataset))]
        # The loader's views are 8-bit; the trainer scales them to [0, 1] on the device.
        views = torch.stack([s[0] for s in samples]).float().div(255)
        splits[split] = views, torch.tensor([s[1] for s in samples])
    return splits


def held_out_accuracy(splits, *, steps, shuffle_labels=False):
    """Test accuracy of the supervised head after ``steps`` full-batch AdamW steps from a seeded initialisation."""
    from genview.methods import build_method

    torch.manual_seed(0)
    backbone, dim = build_backbone({"name": "convnet", "width": 8, "depth": 3})
    model = build_method("supervised", backbone, dim, {"num_classes": 4})
    images, labels = splits["train"]
    if shuffle_labels:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(images, labels).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test_images, test_labels = splits["test"]
    with torch.no_grad():
        return float((model.head(model.backbone(test_images)).argmax(1) == test_labels).float().mean())


@pytest.mark.slow
def test_supervised_learns_the_classes_and_shuffled_labels_teach_nothing(four_shapes):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: more threads only contend
    try:
        accuracies = [held_out_accuracy(four_shapes, steps=0), held_out_accuracy(four_shapes, steps=80)]
        accuracies.append(held_out_accuracy(four_shapes, steps=80, shuffle_labels=True))
    finally:
        torch.set_num_threads(threads)
    # Chance is 1/4; measured 0.25 at initialisation, 0.70 after 80 steps, 0.20 with shuffled labels.
    assert accuracies[0] < 0.4 and accuracies[1] > 0.5 and accuracies[2] < 0.4
