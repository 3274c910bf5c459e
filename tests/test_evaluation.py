"""Evaluation end to end on tiny trained experiments: features, every protocol, result files with provenance."""

import json

import pytest
import torch
from helpers import evaluation_cached_args, indexed_shapes, shapes_spec

from genview.config.load import validate_config
from genview.errors import ConfigError, GenviewError
from genview.evaluation.features import FeatureCache, extract_features
from genview.evaluation.protocols import EvalContext, evaluate, protocol_class
from genview.evaluation.runs import resolve_evaluations
from genview.training.experiments import resolve_experiments
from genview.training.train import train

METHOD_ARGS = {
    "simclr": {"proj_hidden_dim": 32, "proj_dim": 16},
    "clip": {"embed_dim": 16, "text_width": 16, "text_heads": 2, "text_layers": 1, "context_length": 16},
}
SETTINGS = validate_config(
    {"evaluation": {"linear": {"epochs": 2, "batch_size": 16}, "semisup": {"epochs": 1, "batch_size": 8}}}
)["evaluation"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    indexed_shapes(root, train_per_class=3, test_per_class=2)
    config = validate_config(
        {
            "datasets": {"s": {"kind": "shapes", "sources": ["ic"]}},
            "pretrain": {
                "recipes": {"r": {"epochs": 1, "batch_size": 12, "image_size": 16}},
                "backbones": {
                    "b": {"name": "vit", "image_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
                },
                "matrix": [
                    {
                        "methods": ["simclr", "clip"],
                        "variants": ["baseline"],
                        "recipe": "r",
                        "backbone": "b",
                        "dataset": "s",
                        "method_args": METHOD_ARGS,
                        "views": {"n_views": 1},
                    }
                ],
            },
        }
    )
    paths = {}
    spec = shapes_spec()
    for name, experiment in resolve_experiments(config).items():
        train(
            experiment,
            root / name,
            manifest=str(root / "manifest.csv"),
            view_manifests=[],
            execution={"num_workers": 0},
        )
        extract_features(
            root / name / "checkpoint.pt",
            root / "manifest.csv",
            "shapes",
            spec,
            root / name / "features.npz",
            batch_size=16,
            num_workers=0,
        )
        paths[experiment["method"]] = root / name
    return paths, spec


def context(folder, spec, protocol):
    return EvalContext(
        experiment_name=folder.name,
        checkpoint=folder / "checkpoint.pt",
        dataset="shapes",
        spec=spec,
        features_npz=folder / "features.npz",
        settings=SETTINGS[protocol],
        num_workers=0,
    )


def test_feature_cache_holds_every_split(trained):
    (paths, _) = trained
    clip_cache, simclr_cache = (
        FeatureCache(paths["clip"] / "features.npz"),
        FeatureCache(paths["simclr"] / "features.npz"),
    )
    assert clip_cache.splits() == ["test", "train"] and len(clip_cache.label_names) == 12
    assert clip_cache.get("train", "features").shape == (36, 16) and clip_cache.get("test", "labels").shape == (24,)
    assert clip_cache.get("test", "image_embeddings").shape == (24, 16)
    with pytest.raises(Exception, match="image_embeddings"):
        simclr_cache.get("test", "image_embeddings")


@pytest.mark.parametrize("protocol", ["linear_fast", "knn", "linear", "semisup"])
def test_image_protocols_write_results_with_provenance(trained, protocol, tmp_path):
    paths, spec = trained
    result = evaluate(protocol, context(paths["simclr"], spec, protocol), tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == result
    numbers = [v for k, v in result["metrics"].items() if k.startswith("top")]
    assert numbers and all(0 <= v <= 100 for v in numbers)
    provenance = result["provenance"]
    assert provenance["checkpoint"].endswith("checkpoint.pt") and len(provenance["checkpoint_sha256"]) == 64
    assert provenance["experiment_config"].endswith("config.yaml") and provenance["seed"] == 0
    assert provenance["wall_seconds"] > 0 and provenance["code_version"]
    torch.manual_seed(12345)  # whatever ran before in the process, the same seed gives the same numbers
    again = evaluate(protocol, context(paths["simclr"], spec, protocol), tmp_path / "again.json")
    assert again["metrics"] == result["metrics"]


@pytest.mark.parametrize("protocol", ["zeroshot", "retrieval"])
def test_vision_language_protocols(trained, protocol, tmp_path):
    paths, spec = trained
    metrics = evaluate(protocol, context(paths["clip"], spec, protocol), tmp_path / "r.json")["metrics"]
    if protocol == "zeroshot":
        assert 0 <= metrics["top1"] <= metrics["top5"] <= 100 and metrics["classes"] == 12
    else:
        assert metrics["images"] == 24 and metrics["captions"] == 24
        assert all(0 <= metrics[f"{d}_R@{k}"] <= 100 for d in ("image_to_text", "text_to_image") for k in (1, 5, 10))
    with pytest.raises(GenviewError, match="no text tower"):
        evaluate(protocol, context(paths["simclr"], spec, protocol), tmp_path / "x.json")


def test_zero_shot_classifies_the_splits_it_is_given_together(trained, tmp_path):
    """clip-benchmark's whole sets: top-1 over [train, test] is the image-weighted mean of the two splits'."""
    paths, spec = trained
    top1 = {}
    for splits in (["train"], ["test"], ["train", "test"]):
        ctx = context(paths["clip"], spec, "zeroshot")
        ctx.settings = {**ctx.settings, "splits": splits}
        top1["+".join(splits)] = evaluate("zeroshot", ctx, tmp_path / "r.json")["metrics"]["top1"]
    assert top1["train+test"] == pytest.approx((36 * top1["train"] + 24 * top1["test"]) / 60)


def test_linear_probe_reads_the_splits_it_is_given(trained, tmp_path):
    paths, spec = trained
    ctx = context(paths["simclr"], spec, "linear")
    ctx.settings = {**ctx.settings, "test_split": "val"}
    with pytest.raises(GenviewError, match="has no val/features"):
        evaluate("linear", ctx, tmp_path / "r.json")


def test_unknown_protocol_and_bad_runs_are_named():
    with pytest.raises(ConfigError, match="unknown evaluation protocol"):
        protocol_class("nope")
    config = validate_config(
        {
            "datasets": {"s": {"kind": "shapes"}},
            "evaluation": {"runs": [{"protocols": ["knn"], "experiments": ["x_*"], "datasets": ["s"]}]},
        }
    )
    experiments = {name: {"method": "simclr"} for name in ("x_a", "x_b", "y")}
    assert list(resolve_evaluations(config, experiments)) == [("x_a", "knn", "s"), ("x_b", "knn", "s")]
    with pytest.raises(ConfigError, match=r"evaluation.runs\[0\].experiments: 'z\*' matches no"):
        config["evaluation"]["runs"][0]["experiments"] = ["z*"]
        resolve_evaluations(config, experiments)
    config["evaluation"]["runs"][0].update(experiments=["x_a"], protocols=["linear_slow"])
    with pytest.raises(ConfigError, match="unknown protocol 'linear_slow'"):
        resolve_evaluations(config, experiments)


def test_run_settings_override_the_protocol_and_are_checked():
    config = validate_config(
        {
            "datasets": {"s": {"kind": "shapes"}},
            "evaluation": {
                "runs": [
                    {
                        "protocols": ["linear"],
                        "experiments": ["v*"],
                        "datasets": ["s"],
                        "settings": {"linear": {"optimizer": "lars", "batch_size": 4096, "base_lrs": [0.1]}},
                    },
                    {"protocols": ["linear", "knn"], "experiments": ["r*"], "datasets": ["s"]},
                ]
            },
        }
    )
    experiments = {"vit": {"method": "mocov3"}, "r50": {"method": "simsiam"}, "clip": {"method": "clip"}}
    resolved = resolve_evaluations(config, experiments)
    assert resolved["vit", "linear", "s"] == {
        **config["evaluation"]["linear"],
        "optimizer": "lars",
        "batch_size": 4096,
        "base_lrs": [0.1],
    }
    assert resolved["r50", "linear", "s"] == config["evaluation"]["linear"]
    config["evaluation"]["runs"][0]["settings"]["linear"]["optimiser"] = "sgd"
    config["evaluation"]["runs"][1].update(protocols=["zeroshot"], experiments=["r50", "clip"])
    config["evaluation"]["runs"].append(
        {"protocols": ["linear"], "experiments": ["vit"], "datasets": ["s"], "settings": {}}
    )
    with pytest.raises(ConfigError) as error:
        resolve_evaluations(config, experiments)
    message = str(error.value)
    assert "3 problem(s)" in message  # all at once, each naming its key
    assert "evaluation.runs[0].settings.linear: Additional properties are not allowed ('optimiser'" in message
    assert "evaluation.runs[1]: zeroshot needs a text tower, but 'r50' (simsiam) has none" in message
    assert "evaluation.runs[2]: vit/linear/s is also asked for by evaluation.runs[0] with other settings" in message


def test_cached_protocols_run_in_the_feature_job_and_share_one_file(trained, tmp_path):
    """`evaluate cached`: features, then every protocol on them, in one process; read back per protocol."""
    from genview.cli import main
    from genview.evaluation.runs import read_result, result_file

    paths, spec = trained
    folder = paths["clip"]
    protocols = {"knn": SETTINGS["knn"], "linear_fast": SETTINGS["linear_fast"], "zeroshot": SETTINGS["zeroshot"]}
    out = tmp_path / "eval" / "e" / "cached" / "shapes.json"
    assert result_file("e", "knn", "shapes", root=str(tmp_path / "eval")) == str(out)
    assert result_file("e", "linear", "shapes", root=str(tmp_path / "eval")) == str(
        tmp_path / "eval/e/linear/shapes.json"
    )
    rc = main(
        evaluation_cached_args(
            folder / "checkpoint.pt",
            folder.parent / "manifest.csv",
            "shapes",
            "e",
            spec,
            tmp_path / "f.npz",
            out,
            "--num-workers",
            "0",
            "--device",
            "cpu",
            protocols=protocols,
        )
    )
    assert rc == 0 and (tmp_path / "f.npz").is_file()
    for protocol in protocols:
        record = read_result("e", protocol, "shapes", root=str(tmp_path / "eval"))
        assert record["protocol"] == protocol and record["metrics"] and record["settings"] == protocols[protocol]
    assert read_result("e", "retrieval", "shapes", root=str(tmp_path / "eval")) is None
