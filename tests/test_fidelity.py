"""The official recipes, each pinned by hand-computed values: learning-rate rule, coefficient checks, multi-crop,
SLIP's view shuffle, MoCo v3's ViT and heads, weight decay and BatchNorm per method, GenView's softmax group,
DownSampleAndUpsample, per-dataset view size, probe optimisers, batches and splits."""

import math

import pandas as pd
import pytest
import torch
from helpers import REPO, indexed_shapes
from torch import nn

from genview.config.load import dataset_generation, load_config, validate_config
from genview.errors import ConfigError
from genview.training.experiments import peak_lr, resolve_experiments


def config_with(experiment: dict, recipe: dict | None = None, sources=("ic", "tc", "itc")) -> dict:
    return validate_config(
        {
            "datasets": {"s": {"kind": "shapes", "sources": list(sources)}},
            "pretrain": {
                "recipes": {"r": {"epochs": 2, "batch_size": 8, **(recipe or {})}},
                "backbones": {"b": {"name": "vit"}},
                "experiments": {"e": {"recipe": "r", "backbone": "b", "dataset": "s", **experiment}},
            },
        }
    )


# --- 1. learning rate --------------------------------------------------------------------------------------------


def test_views_lr_rule_is_the_official_genviewpp_rule():
    """blr * batch * n_img / 256 * num_crop / 2 with num_crop = 1: 2e-4 * 256 * 4 / 256 / 2 = 4e-4."""
    recipe = {"lr": 2e-4, "batch_size": 256, "lr_scaling": "views"}
    assert peak_lr(recipe, 4) == pytest.approx(4e-4)
    assert peak_lr({**recipe, "batch_size": 512}, 4) == pytest.approx(8e-4)
    assert peak_lr(recipe, 1) == pytest.approx(1e-4)
    assert peak_lr({"lr": 0.03, "batch_size": 512, "lr_scaling": "linear"}, 2) == pytest.approx(0.06)
    assert peak_lr({"lr": 0.6, "batch_size": 512, "lr_scaling": "none"}, 2) == 0.6
    experiments = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    assert experiments["cc3m_slip_genview"]["peak_lr"] == pytest.approx(4e-4)  # 4 views per caption
    assert experiments["cc3m_clip_genview"]["peak_lr"] == pytest.approx(4e-4)
    assert experiments["cc3m_clip_baseline"]["peak_lr"] == pytest.approx(1e-4)  # one real view per caption
    assert experiments["cc3m_clip_baseline"]["views"]["n_views"] == 1
    assert experiments["imagenet1k_mocov3_r50_baseline"]["peak_lr"] == pytest.approx(9.6)  # LARS 9.6 at 4096
    # mmpretrain's mocov3_resnet50_8xb512-amp-coslr-300e_in1k: LARS 4.8 at 4096 (half the 100-epoch recipe's).
    for variant in ("baseline", "views", "genview"):
        assert experiments[f"imagenet1k_mocov3_r50_300e_{variant}"]["peak_lr"] == pytest.approx(4.8)
    assert experiments["imagenet1k_mocov3_vitb_genview"]["peak_lr"] == pytest.approx(2.4e-3)


# --- 2. coefficients -----------------------------------------------------------------------------------------------


def test_coefficients_a_method_cannot_compute_are_config_errors():
    experiment = {"method": "clip", "variant": "genview", "quality": {"epoch_switch": 1, "later_coefs": [1, 1, 1, 0]}}
    with pytest.raises(ConfigError) as error:
        resolve_experiments(config_with(experiment))
    assert (
        "pretrain.experiments.e.quality.later_coefs: method 'clip' has no image-image term, so c0 and c1 must be 0"
    ) in str(error.value)
    experiment = {"method": "slip", "variant": "views", "quality": {"later_coefs": [1, 0, 1, 1]}}
    with pytest.raises(ConfigError, match=r"quality-driven terms \(c1, c3\) need quality weights"):
        resolve_experiments(config_with(experiment))
    with pytest.raises(ConfigError, match="loss coefficients apply to vision-language methods only"):
        resolve_experiments(
            config_with({"method": "simclr", "variant": "genview", "quality": {"early_coefs": [1, 0, 1, 0]}})
        )
    resolved = resolve_experiments(
        config_with({"method": "slip", "variant": "genview", "quality": {"later_coefs": [1, 1, 1, 0]}})
    )["e"]
    assert resolved["quality"]["early_coefs"] == [1, 0, 1, 0] and resolved["quality"]["later_coefs"] == [1, 1, 1, 0]
    clip = resolve_experiments(config_with({"method": "clip", "variant": "genview"}))["e"]["quality"]
    assert (clip["early_coefs"], clip["later_coefs"]) == ([0, 0, 1, 0], [0, 0, 1, 1])


def test_paper_quality_ablation_rows_have_the_coefficients_their_labels_say():
    experiments = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    labels = {
        "cc3m_slip_views": [1, 0, 1, 0],
        "cc3m_slip_q_ii": [1, 1, 1, 0],
        "cc3m_slip_q_it": [1, 0, 1, 1],
        "cc3m_slip_genview": [1, 1, 1, 1],
    }
    for name, later in labels.items():
        assert experiments[name]["method"] == "slip" and experiments[name]["quality"]["later_coefs"] == later, name
        assert experiments[name]["quality"]["early_coefs"] == [1, 0, 1, 0]


# --- 4. multi-crop -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_rows(tmp_path_factory):
    manifest = indexed_shapes(tmp_path_factory.mktemp("fidelity"), train_per_class=1)
    return manifest[manifest.split == "train"].reset_index(drop=True)


def test_multi_crop_samples_and_the_generic_rule(shapes_rows):
    from genview.methods import build_method
    from genview.training.data import PretrainDataset

    multi_crop = {"number": 3, "size": 8, "min_scale": 0.05, "max_scale": 0.14}
    dataset = PretrainDataset(
        shapes_rows,
        mode="two_view",
        augmentation_preset="simclr",
        image_size=16,
        min_scale=0.14,
        seed=0,
        multi_crop=multi_crop,
    )
    view1, view2, local_views, _ = dataset[0]
    assert view1.shape == view2.shape == (3, 16, 16) and local_views.shape == (3, 3, 8, 8)
    assert dataset[0][2].equal(local_views)  # seeded per sample

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())  # any image size -> 12 features
    method = build_method("simclr", backbone, 12, {"proj_hidden_dim": 8, "proj_dim": 4}).eval()
    g1, g2, locals_ = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16), [torch.rand(4, 3, 8, 8) for _ in range(2)]
    expected = (
        method.pair_loss(g1, g2) + sum(0.5 * (method.pair_loss(c, g1) + method.pair_loss(c, g2)) for c in locals_)
    ) / 3
    torch.testing.assert_close(method(g1, g2, locals_), expected)
    torch.testing.assert_close(method(g1, g2), method.pair_loss(g1, g2))


def test_multi_crop_is_refused_where_the_method_cannot_take_it():
    recipe = {"multi_crop": {"number": 2, "size": 8}}
    with pytest.raises(ConfigError, match="multi_crop is not supported by 'mocov2'"):
        resolve_experiments(config_with({"method": "mocov2", "variant": "baseline"}, recipe))
    with pytest.raises(ConfigError, match="multi_crop applies to two-view methods only"):
        resolve_experiments(config_with({"method": "clip", "variant": "baseline"}, recipe))
    paper = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    assert paper["imagenet1k_swav_genview"]["recipe"]["multi_crop"] == {
        "number": 6,
        "size": 96,
        "min_scale": 0.05,
        "max_scale": 0.14,
    }
    assert paper["imagenet1k_swav_genview"]["recipe"]["min_scale"] == 0.14


# --- 5. SLIP view order --------------------------------------------------------------------------------------------


def test_vision_language_views_are_shuffled_per_sample_deterministically(shapes_rows):
    from genview.training.data import PretrainDataset

    # Each "source" view is a constant image whose value names the source, so the order can be read back.
    marks = {"real": 0.0, "tc": 0.25, "ic": 0.5, "itc": 0.75}
    rows = shapes_rows.assign(path=shapes_rows.path)
    dataset = PretrainDataset(
        rows,
        mode="vision_language",
        augmentation_preset="genviewpp",
        image_size=8,
        min_scale=0.5,
        seed=0,
        views={s: {i: [s] for i in rows.id} for s in ("tc", "ic", "itc")},
        sources=["tc", "ic", "itc"],
        n_views=4,
    )
    # a view's "path" is its source
    dataset._views = lambda items: [torch.full((3, 8, 8), marks.get(path, 0.0)) for path, _ in items]
    orders = []
    for index in range(len(rows)):
        views = dataset[index][0]
        orders.append(tuple(round(float(v.mean()), 2) for v in views))
        assert orders[-1] == tuple(round(float(v.mean()), 2) for v in dataset[index][0])  # deterministic
    dataset.shuffle_views = False
    fixed = tuple(round(float(v.mean()), 2) for v in dataset[0][0])
    assert fixed == (0.0, 0.25, 0.5, 0.75)
    assert all(sorted(order) == [0.0, 0.25, 0.5, 0.75] for order in orders)
    slot0 = {order[0] for order in orders}
    assert len(slot0) >= 3  # the first slot holds different sources for different samples (12 samples)


# --- 6. MoCo v3 ViT and heads ----------------------------------------------------------------------------------------


def test_sincos_position_embedding_by_hand():
    from genview.training.backbones import sincos_position_embedding

    table = sincos_position_embedding(2, 2, 8)  # quarter = 2, omega = [1, 1/100]
    omega = [1.0, 0.01]
    for token, (w, h) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):  # width coordinate outermost
        expected = (
            [math.sin(w * o) for o in omega]
            + [math.cos(w * o) for o in omega]
            + [math.sin(h * o) for o in omega]
            + [math.cos(h * o) for o in omega]
        )
        torch.testing.assert_close(table[token], torch.tensor(expected))


def test_mocov3_vit_has_fixed_positions_and_a_frozen_patch_projection():
    from genview.training.backbones import build_backbone, sincos_position_embedding

    vit, dim = build_backbone(
        {
            "name": "vit",
            "image_size": 16,
            "patch_size": 8,
            "embed_dim": 24,
            "depth": 1,
            "num_heads": 12,
            "pos_embed": "sincos",
            "freeze_patch_embed": True,
        }
    )
    assert dim == 24 and vit.blocks[0].attn.num_heads == 12
    torch.testing.assert_close(vit.pos_embed[0, 1:], sincos_position_embedding(2, 2, 24))
    assert vit.pos_embed[0, 0].abs().max() == 0 and not vit.pos_embed.requires_grad
    before = vit.patch_embed.proj.weight.detach().clone()
    vit(torch.rand(2, 3, 16, 16)).sum().backward()
    assert vit.patch_embed.proj.weight.grad is None and vit.blocks[0].attn.qkv.weight.grad is not None
    assert torch.equal(vit.patch_embed.proj.weight, before)


def test_mocov3_heads_have_no_bias_and_the_vit_predictor_ends_in_a_scale_free_bn():
    from genview.methods import build_method

    backbone = nn.Flatten()
    r50 = build_method("mocov3", backbone, 12, {"proj_hidden_dim": 8, "proj_dim": 4, "pred_hidden_dim": 8})
    vit = build_method(
        "mocov3",
        backbone,
        12,
        {"proj_hidden_dim": 8, "proj_dim": 4, "pred_hidden_dim": 8, "proj_layers": 3, "pred_last_batch_norm": True},
    )
    for method in (r50, vit):
        assert all(m.bias is None for m in method.modules() if isinstance(m, nn.Linear))
    assert isinstance(r50.predictor[-1], nn.Linear)
    assert isinstance(vit.predictor[-1], nn.BatchNorm1d) and not vit.predictor[-1].affine
    assert len([m for m in vit.projector if isinstance(m, nn.Linear)]) == 3


def test_paper_mocov3_vit_recipe():
    paper = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    vits = paper["imagenet1k_mocov3_vits_genview"]
    assert vits["backbone"] == {"name": "vit_small", "num_heads": 12, "pos_embed": "sincos", "freeze_patch_embed": True}
    assert vits["method_args"] == {"proj_layers": 3, "pred_last_batch_norm": True}
    assert vits["recipe"]["decay_norm_and_bias"] is True and vits["recipe"]["optimizer"] == "adamw"
    assert paper["cc3m_clip_genview"]["backbone"] == {"name": "vit_base"}  # GenView++ keeps timm's ViT-B


def test_byol_recipe_is_mmpretrains_byol_resnet50_16xb256_coslr_200e():
    """LARS 4.8 at 4096, weight decay 1e-6 (not the BYOL paper's 1.5e-6), EMA from 0.99 (mmpretrain's
    base_momentum 0.01; not the paper's 0.996), followed through to the optimiser and the trainer's first EMA step."""
    from genview.methods import build_method
    from genview.training.schedules import ema_momentum
    from genview.training.train import build_optimizer

    byol = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))["imagenet1k_byol_genview"]
    assert byol["peak_lr"] == pytest.approx(4.8)
    model = build_method("byol", _bn_backbone(), 4, {"proj_hidden_dim": 8, "proj_dim": 4, "pred_hidden_dim": 8})
    decays = {group["weight_decay"] for group in build_optimizer(model, byol["recipe"]).param_groups}
    assert decays == {0.0, 1e-6}
    base = byol["recipe"]["ema_momentum"] or model.options["base_momentum"]
    assert ema_momentum(0, base=base, total_steps=100, schedule=model.ema_schedule) == pytest.approx(0.99)


def _bn_backbone() -> nn.Module:
    """A backbone with a convolution's weight and bias and a BatchNorm's weight and bias: 4 features."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


# The official recipes, read from their configs: does a bias or norm parameter get weight decay (and, with LARS,
# layer adaptation)? mmpretrain's SimCLR, BYOL and MoCo v3 R50 configs exclude them (paramwise custom_keys bn/bias:
# decay_mult 0, lars_exclude); its MoCo v2, SimSiam and SwAV configs set no paramwise rule; MoCo v3 ViT (AdamW) has
# none either; GenView++ (CLIP/SLIP) skips ndim < 2.
OFFICIAL_DECAYS_NORM_AND_BIAS = {
    "imagenet1k_simclr_genview": False,
    "imagenet1k_byol_genview": False,
    "imagenet1k_mocov3_r50_genview": False,
    "imagenet1k_mocov3_r50_300e_genview": False,
    "imagenet1k_mocov2_genview": True,
    "imagenet1k_simsiam_genview": True,
    "imagenet1k_swav_genview": True,
    "imagenet1k_mocov3_vitb_genview": True,
    "cc3m_slip_genview": False,
}
SMALL_HEADS = {
    "simclr": {"proj_hidden_dim": 8, "proj_dim": 4},
    "byol": {"proj_hidden_dim": 8, "proj_dim": 4, "pred_hidden_dim": 8},
    "mocov3": {"proj_hidden_dim": 8, "proj_dim": 4, "pred_hidden_dim": 8},
    "mocov2": {"proj_hidden_dim": 8, "proj_dim": 4, "queue_size": 8},
    "simsiam": {"proj_hidden_dim": 8, "proj_dim": 4, "pred_hidden_dim": 8},
    "swav": {"proj_hidden_dim": 8, "proj_dim": 4, "num_prototypes": 5},
    "slip": {"embed_dim": 4, "text_width": 8, "text_heads": 2, "text_layers": 1, "context_length": 8},
}


def test_which_parameters_get_weight_decay_per_method():
    from genview.methods import build_method
    from genview.training.train import build_optimizer

    paper = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    for name, official in OFFICIAL_DECAYS_NORM_AND_BIAS.items():
        experiment = paper[name]
        model = build_method(experiment["method"], _bn_backbone(), 4, SMALL_HEADS[experiment["method"]])
        optimizer = build_optimizer(model, experiment["recipe"])
        decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
        norm, conv = model.backbone[1], model.backbone[0]
        wd = experiment["recipe"]["weight_decay"]
        assert decay_of[id(conv.weight)] == wd, name
        expected = wd if official else 0.0
        assert decay_of[id(norm.weight)] == decay_of[id(norm.bias)] == decay_of[id(conv.bias)] == expected, name


def test_swav_lars_adapts_a_norm_parameter():
    """timm's LARS adapts the groups with weight decay: SwAV's BatchNorm weight moves by lr * trust * (g + wd p),
    trust = 0.001 |p| / (|g| + wd |p|), as mmpretrain's LARS without lars_exclude."""
    from genview.methods import build_method
    from genview.training.train import build_optimizer

    swav = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))["imagenet1k_swav_genview"]
    model = build_method("swav", _bn_backbone(), 4, SMALL_HEADS["swav"])
    optimizer = build_optimizer(model, swav["recipe"])
    norm = model.backbone[1].weight
    with torch.no_grad():
        norm.uniform_(0.5, 1.5)
    before = norm.detach().clone()
    norm.grad = torch.linspace(-1, 1, 4)
    for group in optimizer.param_groups:
        group["lr"] = 0.6
    optimizer.step()
    wd = swav["recipe"]["weight_decay"]
    trust = 0.001 * before.norm() / (norm.grad.norm() + wd * before.norm())
    torch.testing.assert_close(norm.detach(), before - 0.6 * trust * (torch.linspace(-1, 1, 4) + wd * before))


def test_batch_norm_under_ddp_per_method():
    """The official multi-GPU runs synchronise BatchNorm (mmpretrain's SyncBN configs, GenView++'s SyncBN MLP)
    except MoCo v2, whose per-GPU BN the key shuffle works against."""
    from genview.methods import build_method
    from genview.training.train import distributed_batch_norm

    official = {
        "simclr": nn.SyncBatchNorm,
        "byol": nn.SyncBatchNorm,
        "mocov3": nn.SyncBatchNorm,
        "simsiam": nn.SyncBatchNorm,
        "swav": nn.SyncBatchNorm,
        "slip": nn.SyncBatchNorm,
        "mocov2": nn.BatchNorm2d,
    }
    for method, kind in official.items():
        model = distributed_batch_norm(build_method(method, _bn_backbone(), 4, SMALL_HEADS[method]))
        assert type(model.backbone[1]) is kind, method
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert all(type(m) is nn.SyncBatchNorm for m in norms) == (kind is nn.SyncBatchNorm), method


def test_genview_softmax_groups_do_not_depend_on_the_gpu_count():
    from genview.quality.weights import grouped_weights

    quality = torch.tensor([0.0, 1.0, 2.0, 4.0])
    e = math.e
    by_hand = [2 / (1 + e), 2 * e / (1 + e), 2 / (1 + e**2), 2 * e**2 / (1 + e**2)]
    torch.testing.assert_close(grouped_weights(quality, 2), torch.tensor(by_hand))
    torch.testing.assert_close(grouped_weights(quality, 4), 4 * torch.softmax(quality, 0))
    paper = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    official_group = {  # the official per-GPU batch: 16 x 256, 8 x 512, 8 x 32 (mmpretrain's config names)
        "imagenet1k_byol_genview": 256,
        "imagenet1k_simclr_genview": 256,
        "imagenet1k_mocov3_vitb_genview": 256,
        "imagenet1k_mocov3_r50_300e_genview": 512,
        "imagenet1k_simsiam_genview": 32,
    }
    for name, group in official_group.items():
        assert paper[name]["quality"]["group_size"] == group and paper[name]["gpus"] == 8, name
    with pytest.raises(ConfigError, match="group_size: 3 does not divide the recipe's batch_size 8"):
        resolve_experiments(config_with({"method": "simclr", "variant": "genview", "quality": {"group_size": 3}}))


def test_weight_decay_on_every_parameter_when_asked():
    from genview.training.train import _parameter_groups

    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    model.fixed_lr_modules = ()
    usual = {g["weight_decay"]: len(g["params"]) for g in _parameter_groups(model, 0.1)}
    everything = {g["weight_decay"]: len(g["params"]) for g in _parameter_groups(model, 0.1, True)}
    assert usual == {0.0: 3, 0.1: 1} and everything == {0.1: 4}


# --- 8-10. views, probes, smaller settings -------------------------------------------------------------------------


def test_view_size_and_quality_per_dataset():
    paper = load_config(REPO / "config" / "paper.yaml")
    assert dataset_generation(paper, "imagenet1k")["save_size"] == 512
    assert dataset_generation(paper, "cc3m")["save_size"] == 256
    assert dataset_generation(paper, "cc3m")["jpeg_quality"] == 75  # the official generators' PIL default
    assert dataset_generation(paper, "cc3m_fixed")["ic"] == {"guidance_scale": 10, "noise_level": 200}


def test_simclr_jitter_and_clip_projection_init():
    from genview.methods import build_method
    from genview.training.augment import AUGMENTATIONS

    assert AUGMENTATIONS["simclr"]["jitter"] == (0.8, 0.8, 0.8, 0.2)
    assert AUGMENTATIONS["mocov2"]["jitter"] == AUGMENTATIONS["genviewpp"]["jitter"] == (0.4, 0.4, 0.4, 0.1)
    torch.manual_seed(0)
    clip = build_method(
        "clip",
        nn.Identity(),
        768,
        {"embed_dim": 512, "text_width": 8, "text_heads": 2, "text_layers": 1, "context_length": 8},
    )
    assert clip.image_projection.weight.std().item() == pytest.approx(768**-0.5, rel=0.02)


def test_paper_probes_hold_the_official_learning_rates():
    """Each official probe lr, divided by its batch/256, is in the sweep of the run that evaluates that method."""
    from genview.evaluation.runs import resolve_evaluations

    config = load_config(REPO / "config" / "paper.yaml")
    evaluations = resolve_evaluations(config, resolve_experiments(config))
    official = {  # experiment: (optimizer, lr, batch)
        "imagenet1k_mocov3_vitb_genview": ("sgd", 12.0, 1024),
        "imagenet1k_mocov3_vits_baseline": ("sgd", 12.0, 1024),
        "imagenet1k_mocov3_r50_views": ("sgd", 0.4, 1024),
        "imagenet1k_simsiam_genview": ("lars", 1.6, 4096),
        "imagenet1k_mocov2_baseline": ("sgd", 30.0, 256),
    }
    for experiment, (optimizer, lr, batch) in official.items():
        settings = evaluations[experiment, "linear", "imagenet1k"]
        assert settings["optimizer"] == optimizer and settings["batch_size"] == batch, experiment
        assert any(math.isclose(base * batch / 256, lr) for base in settings["base_lrs"]), experiment
    batches = {
        "imagenet1k": 2048,
        "cifar10": 512,
        "imagenet100": 512,
        "food101": 512,
        "dtd": 64,
        "flowers102": 64,
        "aircraft": 128,
        "pets": 128,
        "caltech101": 128,
    }
    for dataset, batch in batches.items():
        assert evaluations["cc3m_slip_genview", "linear", dataset]["batch_size"] == batch, dataset
    assert evaluations["cc3m_slip_genview", "linear", "sun397"]["batch_size"] == 256  # one GPU x 256


def test_paper_uses_the_official_probe_splits_and_zero_shot_sets():
    """linear.py: Aircraft, DTD, Flowers tested on val; SUN397 trained and tested on the whole set; drop_last for
    ImageNet, CIFAR, ImageNet-100, Food-101, SUN397 only. clip-benchmark: SUN397 and Caltech-101 whole."""
    from genview.evaluation.runs import resolve_evaluations

    config = load_config(REPO / "config" / "paper.yaml")
    evaluations = resolve_evaluations(config, resolve_experiments(config))
    test_split = {"aircraft": "val", "dtd": "val", "flowers102": "val", "sun397": "train", "pets": "test"}
    drop_last = {"imagenet1k": True, "cifar10": True, "food101": True, "sun397": True, "dtd": False, "pets": False}
    drop_last |= {"caltech101": False, "aircraft": False, "flowers102": False}
    for dataset, split in test_split.items():
        settings = evaluations["cc3m_clip_genview", "linear", dataset]
        assert (settings["train_split"], settings["test_split"]) == ("train", split), dataset
    for dataset, drop in drop_last.items():
        assert evaluations["cc3m_clip_genview", "linear", dataset]["drop_last"] is drop, dataset
    assert config["eval_datasets"]["sun397"]["holdout"] is None  # one split, train: the whole set
    assert config["eval_datasets"]["aircraft"]["splits"]["val"] == "val"
    zeroshot = {"sun397": ["train"], "caltech101": ["train", "test"], "cifar10": ["test"], "dtd": ["test"]}
    for dataset, splits in zeroshot.items():
        assert evaluations["cc3m_clip_genview", "zeroshot", dataset]["splits"] == splits, dataset


def test_lars_probe_step_matches_a_plain_computation():
    from genview.evaluation.heads import LinearHeads, _head_optimizer

    torch.manual_seed(0)
    heads = LinearHeads(5, 3, 1)
    with torch.no_grad():
        heads.heads[0].bias.uniform_(-1, 1)  # a zero bias has no norm to adapt to
    weight, bias = heads.heads[0].weight.detach().clone(), heads.heads[0].bias.detach().clone()
    optimizer = _head_optimizer(heads, [0.1], 512, "lars")
    features, labels = torch.randn(8, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    nn.functional.cross_entropy(heads(features)[0], labels).backward()
    grad_w, grad_b = heads.heads[0].weight.grad.clone(), heads.heads[0].bias.grad.clone()
    optimizer.step()
    lr = 0.1 * 512 / 256
    trust = 0.001 * weight.norm() / grad_w.norm()
    torch.testing.assert_close(heads.heads[0].weight.detach(), weight - lr * trust * grad_w)
    # mmpretrain's probe LARS adapts every parameter, the bias too.
    bias_trust = 0.001 * bias.norm() / grad_b.norm()
    torch.testing.assert_close(heads.heads[0].bias.detach(), bias - lr * bias_trust * grad_b)


def test_zeroshot_on_a_two_view_experiment_is_a_config_error():
    from genview.evaluation.runs import resolve_evaluations

    config = config_with({"method": "simclr", "variant": "baseline"})
    config["evaluation"]["runs"] = [
        {"protocols": ["zeroshot"], "experiments": ["e"], "datasets": ["s"], "settings": {}}
    ]
    with pytest.raises(ConfigError, match="zeroshot needs a text tower"):
        resolve_evaluations(config, resolve_experiments(config))


def test_shuffle_is_on_by_default_and_can_be_turned_off():
    resolved = resolve_experiments(config_with({"method": "slip", "variant": "views"}))["e"]
    assert resolved["views"]["shuffle"] is True
    off = resolve_experiments(config_with({"method": "slip", "variant": "views", "views": {"shuffle": False}}))
    assert off["e"]["views"]["shuffle"] is False
    assert pd.api.types.is_bool(off["e"]["views"]["shuffle"])


def catalog_differences(catalog, registry) -> list[str]:
    """Where the parse-time catalog and the method classes disagree: a method on one side only, or an attribute (a
    class without one, e.g. ``has_image_image_head`` on a two-view method, has the catalog's default False)."""
    from genview.method_catalog import ATTRIBUTES

    def stated(cls, attribute):
        return getattr(cls, attribute, False)

    differences = [f"{name}: only in the catalog" for name in set(catalog) - set(registry)]
    differences += [f"{name}: only a class" for name in set(registry) - set(catalog)]
    for name in sorted(set(catalog) & set(registry)):
        differences += [
            f"{name}.{attribute}: catalog {getattr(catalog[name], attribute)!r}, "
            f"class {stated(registry[name], attribute)!r}"
            for attribute in ATTRIBUTES
            if getattr(catalog[name], attribute) != stated(registry[name], attribute)
        ]
    return differences


def test_the_method_catalog_states_what_the_classes_are():
    """The parse-time checks read the catalog without importing torch; it must say what the classes say."""
    import dataclasses

    from genview.method_catalog import METHOD_CATALOG
    from genview.methods import METHODS

    registry = {name: METHODS[name] for name in METHODS}  # listing the registry imports every method module
    assert catalog_differences(METHOD_CATALOG, registry) == []
    # A change made on one side only is caught: a class's option, its momentum flag, a method the catalog lacks.
    changed = dict(METHOD_CATALOG)
    changed["simclr"] = dataclasses.replace(changed["simclr"], default_options={"temperature": 0.2})
    changed["byol"] = dataclasses.replace(changed["byol"], uses_momentum=False)
    del changed["swav"]
    assert catalog_differences(changed, registry) == [
        "swav: only a class",
        "byol.uses_momentum: catalog False, class True",
        f"simclr.default_options: catalog {{'temperature': 0.2}}, class {METHODS['simclr'].default_options!r}",
    ]


def test_paper_normalisation_and_swav_queue_follow_the_official_recipes():
    paper = resolve_experiments(load_config(REPO / "config" / "paper.yaml"))
    assert paper["cc3m_slip_genview"]["recipe"]["normalization"] == "imagenet"  # StableRep's loader
    assert paper["imagenet1k_simsiam_genview"]["recipe"]["normalization"] == "clip"  # GenView's data preprocessor
    assert paper["imagenet1k_swav_views"]["method_args"] == {"queue_size": 3840, "queue_start_iters": 75075}


def test_deviations_document_counts_its_rows():
    text = (REPO / "docs" / "deviations.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert [int(row.split("|")[1]) for row in rows] == list(range(1, len(rows) + 1))
    assert f"{len(rows)} differences are listed." in text
