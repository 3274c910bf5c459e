"""Every experiment of config/paper.yaml trains: each is built with a tiny backbone on tiny data and trained for a
few steps across its switch epoch, so a recipe, option or coefficient set that cannot run fails here, not on a
cluster after days in a queue. Every evaluation the paper config asks for resolves to a protocol with settings."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO, indexed_shapes

from genview.config.load import load_config
from genview.evaluation.protocols import protocol_class
from genview.evaluation.runs import resolve_evaluations
from genview.method_catalog import METHOD_CATALOG
from genview.training.experiments import resolve_experiments
from genview.training.train import train

PAPER = load_config(REPO / "config" / "paper.yaml")
EXPERIMENTS = resolve_experiments(PAPER)
# Small sizes for the options that set a width; structural options (layers, output BN, temperature) stay.
TINY_OPTIONS = {
    "proj_hidden_dim": 16, "proj_dim": 8, "pred_hidden_dim": 16, "queue_size": 16, "num_prototypes": 10,
    "freeze_prototypes_iters": 2, "embed_dim": 16, "text_width": 16, "text_heads": 2, "text_layers": 1,
    "context_length": 16, "ssl_mlp_dim": 16, "ssl_emb_dim": 8,
}  # fmt: skip


def tiny(experiment: dict, quality_encoder: dict) -> dict:
    """The experiment at toy size: same method, variant, optimiser, lr rule, augmentation, multi-crop, ViT options
    and coefficients; 16 px images, a one-block ViT (or a small-stem ResNet-18 for ResNet-50), batch 4, 2 epochs
    with the switch between them."""
    e = copy.deepcopy(experiment)
    backbone = e["backbone"]
    if backbone["name"].startswith("resnet"):
        e["backbone"] = {"name": "resnet18", "small_stem": True}
    else:
        heads = backbone.get("num_heads", 2 if backbone["name"] == "vit" else 0) or 2
        e["backbone"] = {
            **{k: v for k, v in backbone.items() if k in ("pos_embed", "freeze_patch_embed")},
            "name": "vit",
            "image_size": 16,
            "patch_size": 8,
            "embed_dim": 24,
            "depth": 1,
            "num_heads": heads if 24 % heads == 0 else 2,
        }
    defaults = METHOD_CATALOG[e["method"]].default_options
    e["method_args"] = {**e["method_args"], **{k: v for k, v in TINY_OPTIONS.items() if k in defaults}}
    recipe = e["recipe"]
    recipe.update(epochs=2, batch_size=4, image_size=16, warmup_epochs=min(recipe["warmup_epochs"], 1))
    if recipe["multi_crop"]:
        recipe["multi_crop"] = {**recipe["multi_crop"], "size": 8}
    if recipe["downsample"]:
        recipe["downsample"] = {"prob": recipe["downsample"]["prob"], "sizes": [4, 8]}
    if e["quality"]["epoch_switch"]:
        e["quality"]["epoch_switch"] = 1
    if "quality_encoder" in e:
        e["quality_encoder"] = quality_encoder
    return e


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from genview.models.open_clip_models import build_tiny_quality_encoder

    root = tmp_path_factory.mktemp("paper_experiments")
    manifest = indexed_shapes(root, train_per_class=1)
    train_rows = manifest[manifest.split == "train"]
    # 'Generated' views: other real images, for every source the paper generates.
    views = pd.concat(
        [
            pd.DataFrame(
                {"id": train_rows.id, "view": np.roll(train_rows.path.to_numpy(), shift), "source": source, "sample": 0}
            )
            for shift, source in enumerate(("ic", "tc", "itc"), start=1)
        ]
    )
    views.to_csv(root / "views.csv", index=False)
    encoder = build_tiny_quality_encoder(root / "quality_encoder")
    vector = np.random.default_rng(0).standard_normal(320).astype(np.float32)
    np.savez(root / "quality_pca.npz", vector=vector / np.linalg.norm(vector))
    return root, {"model": f"local-dir:{encoder}", "pretrained": None, "image_size": None}


@pytest.mark.slow  # one short training per paper experiment: about 4 minutes in all
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_paper_experiment_trains_across_its_switch_epoch(name, inputs, tmp_path):
    root, quality_encoder = inputs
    experiment = tiny(EXPERIMENTS[name], quality_encoder)
    out = tmp_path / name
    train(
        experiment,
        out,
        manifest=str(root / "manifest.csv"),
        view_manifests=[str(root / "views.csv")],
        quality_vector=str(root / "quality_pca.npz") if experiment["variant"] == "genview" else None,
        execution={"num_workers": 0, "save_every_epochs": 1},
    )
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["steps"] == 2 * 3 and checkpoint["skipped_steps"] < checkpoint["steps"]
    records = [pd.read_json(out / "metrics.jsonl", lines=True)]
    steps = records[0][records[0].type == "step"]
    assert steps.loss.notna().any()
    if EXPERIMENTS[name]["quality"].get("later_coefs"):  # the later coefficients really ran in epoch 2
        later = steps[steps.epoch == 1]
        quality = EXPERIMENTS[name]["quality"]["later_coefs"]
        for term, coefficient in zip(("ii_qd", "it_qd"), (quality[1], quality[3])):
            assert (later[term].abs() > 0).all() == bool(coefficient), (name, term)


def test_every_paper_evaluation_resolves_to_a_protocol_with_settings():
    evaluations = resolve_evaluations(PAPER, EXPERIMENTS)
    assert len(evaluations) > 300
    for (experiment, protocol, dataset), settings in evaluations.items():
        assert protocol_class(protocol).name == protocol
        assert set(settings) == set(PAPER["evaluation"][protocol]), (experiment, protocol, dataset)
