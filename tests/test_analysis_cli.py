"""The analysis, quality-vector and model commands as the workflow calls them, on a small `shapes` set."""

import json

import numpy as np
import pandas as pd
import pytest

from genview.analysis.params import read_params
from genview.cli import main
from genview.config.load import validate_config
from genview.errors import BadInputError, GenviewError
from genview.models.diffusion import load_pipeline
from genview.models.tiny import TINY_MARKERS, build_tiny_models

ANALYSIS = validate_config({"analysis": {"fg_sample_per_class": 2, "llm_attempts": 2}})["analysis"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    models = build_tiny_models(root / "models")
    config = root / "c.yaml"
    config.write_text("datasets:\n  toy: {kind: shapes, train_per_class: 2, test_per_class: 1}\n")
    return root, models, config


def run(root, monkeypatch, *argv):
    monkeypatch.chdir(root)
    assert main(list(argv)) == 0


def test_build_tiny_writes_every_role(prepared):
    _, models, _ = prepared
    assert set(models) == set(TINY_MARKERS) and all(path.is_file() for path in models.values())


@pytest.mark.slow
def test_analysis_commands_end_to_end(prepared, monkeypatch):
    root, models, config = prepared
    run(root, monkeypatch, "data", "make-shapes", "--dataset", "toy", "--config", str(config))
    run(root, monkeypatch, "data", "index", "--dataset", "toy", "--config", str(config), "--out-dir", "d")
    run(root, monkeypatch, "data", "shard", "--manifest", "d/manifest.csv", "--num-shards", "1", "--out-dir", "s")
    encoder = json.dumps({"model": f"local-dir:{models['fg_encoder'].parent}"})
    analysis = json.dumps(ANALYSIS)
    run(
        root,
        monkeypatch,
        "analysis",
        "fit-foreground",
        "--manifest",
        "d/manifest.csv",
        "--encoder",
        encoder,
        "--analysis",
        analysis,
        "--out",
        "fit.npz",
        "--overlay",
        "fit.png",
        "--device",
        "cpu",
    )
    assert len(np.load(root / "fit.npz")["sample_ids"]) == 24
    quality_encoder = json.dumps({"model": f"local-dir:{models['quality_encoder'].parent}"})
    run(
        root,
        monkeypatch,
        "quality",
        "fit-vector",
        "--manifest",
        "d/manifest.csv",
        "--encoder",
        quality_encoder,
        "--analysis",
        analysis,
        "--out",
        "quality_pca.npz",
        "--device",
        "cpu",
    )
    assert len(np.load(root / "quality_pca.npz")["sample_ids"]) == 24
    run(
        root,
        monkeypatch,
        "analysis",
        "foreground",
        "--shard",
        "s/0.csv",
        "--fit",
        "fit.npz",
        "--encoder",
        encoder,
        "--analysis",
        analysis,
        "--out",
        "fg.csv",
        "--device",
        "cpu",
    )
    run(root, monkeypatch, "analysis", "complexity", "--shard", "s/0.csv", "--analysis", analysis, "--out", "cx.csv")
    llm = json.dumps(
        {
            "path": str(models["complexity_llm"].parent),
            "trust_remote_code": False,
            "max_new_tokens": 4,
            "do_sample": None,
        }
    )
    llm_analysis = json.dumps({**ANALYSIS, "complexity_scorer": "llm"})
    run(
        root,
        monkeypatch,
        "analysis",
        "complexity",
        "--shard",
        "s/0.csv",
        "--analysis",
        llm_analysis,
        "--llm",
        llm,
        "--out",
        "cx_llm.csv",
        "--device",
        "cpu",
    )
    lexical, by_llm = pd.read_csv(root / "cx.csv"), pd.read_csv(root / "cx_llm.csv")
    assert set(lexical.complexity_source) == {"lexical"}
    # The random tiny LLM never answers in the format: every row records its lexical fallback after 2 attempts.
    assert set(by_llm.complexity_source) == {"lexical-fallback"} and set(by_llm.llm_attempts) == {2}
    assert list(by_llm.complexity) == list(lexical.complexity)
    params = read_params(root / "s/0.csv", foreground_csv=root / "fg.csv", complexity_csv=root / "cx.csv")
    assert set(params.columns) >= {"id", "fg_ratio", "noise_level", "complexity", "guidance_scale"}
    assert len(params) == 24 and params.noise_level.notna().all() and params.guidance_scale.isin([2, 4, 6, 8]).all()
    assert "noise_level" not in read_params(root / "s/0.csv", complexity_csv=root / "cx.csv")


def test_params_refuse_a_part_missing_ids(tmp_path):
    pd.DataFrame({"id": ["a", "b"], "caption": ["x", "y"]}).to_csv(tmp_path / "shard.csv", index=False)
    pd.DataFrame({"id": ["a"], "complexity": [1]}).to_csv(tmp_path / "cx.csv", index=False)
    with pytest.raises(BadInputError, match="cx.csv: 1 id.s. of .*shard.csv missing"):
        read_params(tmp_path / "shard.csv", complexity_csv=tmp_path / "cx.csv")


def test_pipeline_loader_names_the_role_and_path(tmp_path):
    with pytest.raises(GenviewError, match=r"models.unclip.path: .*not a diffusers pipeline folder"):
        load_pipeline("unclip", {"path": str(tmp_path / "nothing")})
