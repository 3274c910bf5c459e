import json
import logging
from importlib.resources import files

import pytest

from genview.config.load import validate_config
from genview.errors import BadInputError
from genview.evaluation.catalog import SHAPES_TEMPLATES, class_names, label_order, zero_shot_templates


def spec(kind, **values):
    return validate_config({"eval_datasets": {"d": {"kind": kind, **values}}})["eval_datasets"]["d"]


def clip_benchmark(filename):
    return json.loads((files("clip_benchmark.datasets") / filename).read_text())


def test_templates_come_from_clip_benchmark():
    templates = zero_shot_templates("cifar10", spec("torchvision", name="CIFAR10", root="/d"))
    assert templates and all("{c}" in t for t in templates)
    assert templates == clip_benchmark("en_zeroshot_classification_templates.json")["cifar10"]
    pets = zero_shot_templates("pets", spec("torchvision", name="OxfordIIITPet", root="/d"))
    assert pets == clip_benchmark("en_zeroshot_classification_templates.json")["pets"] and pets != templates
    imagenet = zero_shot_templates("imagenet100", spec("imagefolder", root="/d"))
    assert imagenet == clip_benchmark("en_zeroshot_classification_templates.json")["imagenet1k"]
    override = zero_shot_templates("my_set", spec("csv", root="/d", file="x.csv", zeroshot_key="food101"))
    assert override == clip_benchmark("en_zeroshot_classification_templates.json")["food101"]


def test_shapes_have_their_own_templates():
    templates = zero_shot_templates("shapes", spec("shapes"))
    assert templates == SHAPES_TEMPLATES and all("{c}" in t for t in templates)
    assert class_names("shapes", spec("shapes"), ["red_circle", "blue_square"]) == ["blue square", "red circle"]


def test_unknown_dataset_says_which_key_to_set():
    with pytest.raises(BadInputError, match="zeroshot_key"):
        zero_shot_templates("cc", spec("csv", root="/d", file="x.csv"))
    with pytest.raises(BadInputError, match="zeroshot_key"):
        zero_shot_templates("q", spec("torchvision", name="QMNIST", root="/d"))
    with pytest.raises(BadInputError, match="'nope' is not a clip-benchmark dataset key"):
        zero_shot_templates("cc", spec("csv", root="/d", file="x.csv", zeroshot_key="nope"))


def test_class_names_from_clip_benchmark_in_torchvision_order():
    names = clip_benchmark("en_classnames.json")
    # MNIST: torchvision's class constant gives the order, clip-benchmark the names
    mnist = spec("torchvision", name="MNIST", root="/d")
    labels = ["3 - three", "0 - zero"]
    order = label_order("mnist", mnist, labels)
    assert order[:2] == ["0 - zero", "1 - one"] and len(order) == 10
    assert class_names("mnist", mnist, labels) == names["mnist"]
    # GTSRB has no class names in torchvision: its targets are the labels, ordered numerically
    gtsrb = spec("torchvision", name="GTSRB", root="/d")
    labels = [str(i) for i in range(43)][::-1]
    assert label_order("gtsrb", gtsrb, labels)[:3] == ["0", "1", "2"]
    assert class_names("gtsrb", gtsrb, labels) == names["gtsrb"]
    # EuroSAT (an ImageFolder): sorted folder names
    eurosat = spec("torchvision", name="EuroSAT", root="/d")
    folders = [
        "SeaLake",
        "AnnualCrop",
        "Forest",
        "HerbaceousVegetation",
        "Highway",
        "Industrial",
        "Pasture",
        "PermanentCrop",
        "Residential",
        "River",
    ]
    assert (
        dict(zip(label_order("eurosat", eurosat, folders), class_names("eurosat", eurosat, folders)))["SeaLake"]
        == "lake or sea"
    )
    # Caltech101: torchvision drops BACKGROUND_Google, clip-benchmark lists it first
    caltech = spec("torchvision", name="Caltech101", root="/d")
    labels = ["Faces", "Faces_easy", "Leopards", "Motorbikes"] + [f"c{i:03d}" for i in range(97)]
    assert class_names("caltech101", caltech, labels)[:4] == [
        "off-center face",
        "centered face",
        "leopard",
        "motorbike",
    ]
    # FER2013: torchvision's CSV targets (4 = sad, 6 = neutral) against clip-benchmark's sorted folder names
    fer = class_names("fer2013", spec("torchvision", name="FER2013", root="/d"), [str(i) for i in range(7)])
    assert fer[4] == "sad" and fer[6] == "neutral"


def test_imagenet_subset_names_by_wnid():
    names = clip_benchmark("en_classnames.json")["imagenet1k"]
    imagenet = spec("imagefolder", root="/d")
    assert class_names("imagenet100", imagenet, ["n01443537", "n01440764"]) == [names[0], names[1]]


def test_class_names_fall_back_to_labels(caplog):
    cifar = spec("torchvision", name="CIFAR100", root="/d")
    assert class_names("cifar100", cifar, ["maple_tree", "aquarium_fish"]) == ["aquarium fish", "maple tree"]
    sun = spec("torchvision", name="SUN397", root="/d")
    assert class_names("sun", sun, ["apartment_building/outdoor"]) == ["apartment building outdoor"]
    plain = spec("csv", root="/d", file="x.csv")
    assert class_names("x", plain, ["b_c", "a"]) == ["a", "b c"]
    # clip-benchmark's names cannot be matched to a partial class set: labels, with a warning
    with caplog.at_level(logging.WARNING):
        partial = class_names("eurosat", spec("torchvision", name="EuroSAT", root="/d"), ["Forest", "River"])
    assert partial == ["Forest", "River"] and "do not match" in caplog.text


def test_label_order_is_idempotent_and_numeric_when_integer():
    for dataset, labels in [
        (spec("torchvision", name="MNIST", root="/d"), ["1 - one"]),
        (spec("torchvision", name="SVHN", root="/d"), ["10", "2", "1"]),
        (spec("imagefolder", root="/d"), ["b", "a", "a"]),
    ]:
        order = label_order("d", dataset, labels)
        assert label_order("d", dataset, order) == order
    assert label_order("d", spec("torchvision", name="SVHN", root="/d"), ["10", "2", "1"]) == ["1", "2", "10"]
