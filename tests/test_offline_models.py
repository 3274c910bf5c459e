"""Offline weights: `genview models fetch` downloads what a config names (with each library's own download
function), and jobs under `models.offline` read only the cache: the tiny stand-ins and hub ids that are in the cache
load, and a hub id that is not fails at once with the role, the id and the fetch command (no network is needed:
offline mode never connects)."""

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, generation_views_args, genview_command, snakemake, snakemake_command, tool_env

from genview.config.load import validate_config
from genview.errors import ConfigError, GenviewError
from genview.models.offline import model_environment

PAPER_MODELS = {
    "unclip": {"path": "stabilityai/stable-diffusion-2-1-unclip", "variant": "fp16"},
    "text2img": {"path": "stabilityai/stable-diffusion-2-1", "revision": "v2"},
    "fg_encoder": {"model": "ViT-H-14", "pretrained": "laion2b_s32b_b79k"},
    "quality_encoder": {"model": "convnext_base_w", "pretrained": "laion2b_s13b_b82k_augreg", "image_size": 224},
    "complexity_llm": {"path": "deepseek-ai/DeepSeek-V2-Lite-Chat", "trust_remote_code": True},
}
FAKE_REVISION = "0" * 40


def offline_env(cache: Path, config_files: str = "config/paper.yaml") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "GENVIEW_"))}
    env.update(model_environment({"offline": True, "cache_dir": str(cache)}, [config_files]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_the_config_keys_become_the_job_environment(tmp_path):
    assert model_environment({"offline": False, "cache_dir": None}) == {}
    env = model_environment({"offline": True, "cache_dir": str(tmp_path / "w")}, ["a.yaml", "b.yaml"])
    assert env == {
        "GENVIEW_MODEL_CACHE": str(tmp_path / "w"),
        "HF_HUB_CACHE": str(tmp_path / "w" / "huggingface"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GENVIEW_CONFIG_FILES": f"a.yaml{os.pathsep}b.yaml",
    }
    config = validate_config({"models": {"offline": True, "cache_dir": "/shared/weights"}})
    assert config["models"]["offline"] is True and config["models"]["unclip"]["path"]  # roles keep their defaults
    with pytest.raises(ConfigError, match="models.offline"):
        validate_config({"models": {"offline": "yes"}})


def test_fetch_downloads_each_hub_model_with_its_settings_and_skips_local_ones(tmp_path, monkeypatch):
    import diffusers
    import huggingface_hub
    import open_clip.pretrained

    from genview.models.fetch import fetch_models

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(
        diffusers.DiffusionPipeline, "download", lambda path, **kw: calls.append(("diffusers", path, kw)) or "/x"
    )
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda path, **kw: calls.append(("snapshot", path, kw)) or "/y"
    )
    monkeypatch.setattr(
        open_clip.pretrained,
        "download_pretrained",
        lambda cfg, **kw: calls.append(("open_clip", cfg["hf_hub"], kw)) or "/z",
    )
    config = validate_config({"models": copy.deepcopy(PAPER_MODELS), "analysis": {"complexity_scorer": "llm"}})
    lines = []
    assert fetch_models(config, cache=tmp_path / "c", say=lines.append) == list(PAPER_MODELS)
    hub, clip = str(tmp_path / "c" / "huggingface"), str(tmp_path / "c" / "open_clip")
    assert calls == [
        (
            "diffusers",
            "stabilityai/stable-diffusion-2-1-unclip",
            {"revision": None, "variant": "fp16", "cache_dir": hub},
        ),
        ("diffusers", "stabilityai/stable-diffusion-2-1", {"revision": "v2", "variant": None, "cache_dir": hub}),
        ("open_clip", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K/", {"cache_dir": clip}),
        ("open_clip", "laion/CLIP-convnext_base_w-laion2B-s13B-b82K-augreg/", {"cache_dir": clip}),
        ("snapshot", "deepseek-ai/DeepSeek-V2-Lite-Chat", {"cache_dir": hub}),
    ]

    # The embedded default names only local stand-ins and the lexical scorer: nothing to download, a line each.
    calls.clear()
    lines.clear()
    assert fetch_models(validate_config({}), say=lines.append) == []
    assert calls == []
    assert [line.split(":")[0] for line in lines[:5]] == [f"models.{role}" for role in PAPER_MODELS]
    assert "skipped, results/models/tiny/unclip is a local folder" in lines[0]
    assert "skipped, local-dir:results/models/tiny/fg_encoder is a local folder" in lines[2]
    assert "skipped, analysis.complexity_scorer is 'lexical'" in lines[4]
    with pytest.raises(GenviewError, match="unknown pretrained|no pretrained tag 'nope'"):
        fetch_models(
            validate_config({"models": {"fg_encoder": {"model": "ViT-H-14", "pretrained": "nope"}}}),
            roles=["fg_encoder"],
            say=lines.append,
        )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GenviewError, match="downloads are off"):
        fetch_models(config, say=lines.append)


def put_in_hub_cache(folder: Path, repository: str, cache: Path) -> None:
    """``folder`` as the `main` revision of ``repository`` in a Hugging Face hub cache (the layout a download
    leaves: refs/main naming a snapshot folder)."""
    entry = cache / f"models--{repository.replace('/', '--')}"
    shutil.copytree(folder, entry / "snapshots" / FAKE_REVISION)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(FAKE_REVISION)


LOADERS = textwrap.dedent("""
    import json, sys
    from genview.cli import main
    from genview.errors import GenviewError
    from genview.models.chat_llm import load_chat_model
    from genview.models.diffusion import load_pipeline
    from genview.models.open_clip_models import load_open_clip

    models, hub = sys.argv[1], json.loads(sys.argv[2])
    loads = {
        "local unclip": lambda: load_pipeline("unclip", {"path": f"{models}/unclip"}),
        "local text2img": lambda: load_pipeline("text2img", {"path": f"{models}/text2img"}),
        "local fg_encoder": lambda: load_open_clip({"model": f"local-dir:{models}/fg_encoder"}),
        "local quality_encoder": lambda: load_open_clip({"model": f"local-dir:{models}/quality_encoder"},
                                                        role="quality_encoder"),
        "local complexity_llm": lambda: load_chat_model(f"{models}/complexity_llm"),
        "cached unclip": lambda: load_pipeline("unclip", {"path": "genview-test/tiny-unclip"}),
        "cached fg_encoder": lambda: load_open_clip({"model": "hf-hub:genview-test/tiny-clip"}),
        "cached complexity_llm": lambda: load_chat_model("genview-test/tiny-chat"),
        "missing unclip": lambda: load_pipeline("unclip", hub["unclip"]),
        "missing text2img": lambda: load_pipeline("text2img", hub["text2img"]),
        "missing fg_encoder": lambda: load_open_clip(hub["fg_encoder"]),
        "missing quality_encoder": lambda: load_open_clip(hub["quality_encoder"], role="quality_encoder"),
        "missing complexity_llm": lambda: load_chat_model(hub["complexity_llm"]["path"], trust_remote_code=True),
    }
    results = {}
    for name, load in loads.items():
        try:
            results[name] = ["loaded", type(load()).__name__]
        except GenviewError as error:
            results[name] = ["error", str(error)]
    print("RESULTS " + json.dumps(results))
""")


@pytest.mark.slow
def test_offline_jobs_load_local_and_cached_models_and_name_the_fetch_command_for_missing_ones(tmp_path):
    from genview.models.tiny import build_tiny_models

    models = tmp_path / "models"
    build_tiny_models(models)
    cache = tmp_path / "weights"
    put_in_hub_cache(models / "unclip", "genview-test/tiny-unclip", cache / "huggingface")
    put_in_hub_cache(models / "complexity_llm", "genview-test/tiny-chat", cache / "huggingface")
    put_in_hub_cache(models / "fg_encoder", "genview-test/tiny-clip", cache / "open_clip")  # open_clip's own cache
    result = subprocess.run(
        [sys.executable, "-c", LOADERS, str(models), json.dumps(PAPER_MODELS)],
        cwd=tmp_path,
        env=offline_env(cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    results = json.loads(lines[0].removeprefix("RESULTS "))
    for name in ("local", "cached"):
        for key in [k for k in results if k.startswith(name)]:
            assert results[key][0] == "loaded", f"{key}: {results[key]}"
    assert results["cached unclip"][1] == "StableUnCLIPImg2ImgPipeline"
    ids = {
        "unclip": "stabilityai/stable-diffusion-2-1-unclip (variant fp16)",
        "text2img": "stabilityai/stable-diffusion-2-1 (revision v2)",
        "fg_encoder": "open_clip ViT-H-14 / laion2b_s32b_b79k",
        "quality_encoder": "open_clip convnext_base_w / laion2b_s13b_b82k_augreg",
        "complexity_llm": "deepseek-ai/DeepSeek-V2-Lite-Chat",
    }
    for role, model in ids.items():
        outcome, message = results[f"missing {role}"]
        assert outcome == "error", f"{role}: {message}"
        assert message.startswith(f"models.{role}: {model} is not in the model cache {cache}"), message
        assert "runs offline" in message
        assert message.endswith(f"genview models fetch config/paper.yaml --roles {role} --cache {cache}"), message


@pytest.mark.slow
def test_an_offline_job_with_a_missing_weight_exits_with_the_message(tmp_path):
    """The job's own command line: exit status 2 and one line naming the role, the id and the fetch command."""
    result = subprocess.run(
        genview_command(
            *generation_views_args(
                "tc", "s.csv", "v", "v.csv", validate_config({})["generation"], PAPER_MODELS["text2img"]
            )
        ),
        cwd=tmp_path,
        env=offline_env(tmp_path / "weights", "my config.yaml"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("genview generation: error: models.text2img: stabilityai/stable-diffusion-2-1 (revision v2)")
    assert last.endswith(f"genview models fetch 'my config.yaml' --roles text2img --cache {tmp_path / 'weights'}")


@pytest.mark.workflow
def test_the_workflow_passes_the_offline_settings_to_its_jobs(workdir, tmp_path):
    """models.offline and models.cache_dir reach the job's environment, not its params."""
    shim = tmp_path / "shim"
    shim.mkdir()
    record = tmp_path / "env.txt"
    (shim / "python").write_text(
        "#!/bin/sh\n"
        'echo "$HF_HUB_OFFLINE $TRANSFORMERS_OFFLINE $HF_HUB_CACHE $GENVIEW_MODEL_CACHE $GENVIEW_CONFIG_FILES"'
        f" >> '{record}'\n"
        f"exec '{sys.executable}' \"$@\"\n"
    )
    (shim / "python").chmod(0o755)
    target = "results/datasets/shapes/captions.csv"
    offline = tmp_path / "offline.yaml"  # merged over the default, as a second --configfile
    offline.write_text("models: {offline: true, cache_dir: weights}\n")
    result = subprocess.run(
        snakemake_command(
            target, "--cores", "1", "--configfile", REPO / "config/config.yaml", offline, workdir=workdir
        ),
        cwd=workdir,
        env=tool_env(shim),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert record.read_text().split() == [
        "1",
        "1",
        str(workdir / "weights" / "huggingface"),
        str(workdir / "weights"),
        f"{REPO / 'config/config.yaml'}{os.pathsep}{offline}",
    ]
    # An execution setting: turning it off reruns nothing.
    dry = snakemake(target, "--dry-run", "--cores", "1", "--configfile", REPO / "config/config.yaml", workdir=workdir)
    assert "Nothing to be done" in dry.stdout + dry.stderr
