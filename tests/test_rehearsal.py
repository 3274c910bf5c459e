"""The dress rehearsal (config/rehearsal.yaml): derived from config/paper.yaml, datasets written in their own
formats, every model at its real architecture. Model sizes are checked on the meta device (no weights allocated)
against the published parameter counts."""

import json
import os
import re
import time

import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO, job_counts, snakemake
from PIL import Image

from genview.config.load import derive_config, load_config, merge_patch, read_yaml
from genview.data.index import index_dataset
from genview.data.synthetic import make_synthetic
from genview.errors import ConfigError
from genview.evaluation.runs import CACHED_PROTOCOLS, read_result, resolve_evaluations, result_file
from genview.rehearsal import build as rehearsal
from genview.report.specs import load_table_specs
from genview.training.experiments import resolve_experiments

PAPER = load_config(REPO / "config/paper.yaml")
REHEARSAL = load_config(REPO / "config/rehearsal.yaml")
CPU = load_config(REPO / "config/rehearsal_cpu.yaml")

M = 1e6
# Published parameter counts. open_clip: docs/model_profile.csv (image / text / total, in millions, two decimals);
# SD 2.1: the UNet (865.9M) and VAE (83.65M) of stabilityai/stable-diffusion-2-1; DeepSeek-V2-Lite(-Chat): 15.7B
# total parameters (model card). (count, relative tolerance)
PUBLISHED = {
    ("fg_encoder", "model"): (986.11 * M, 0.0001),
    ("fg_encoder", "image"): (632.08 * M, 0.0001),
    ("fg_encoder", "text"): (354.03 * M, 0.0001),
    ("quality_encoder", "model"): (179.39 * M, 0.0001),
    ("quality_encoder", "image"): (88.22 * M, 0.0001),
    ("quality_encoder", "text"): (91.16 * M, 0.0001),
    ("text2img", "unet"): (865.91 * M, 0.0001),
    ("text2img", "vae"): (83.65 * M, 0.0001),
    ("unclip", "vae"): (83.65 * M, 0.0001),
    ("unclip", "image_encoder"): (632.08 * M, 0.0001),  # CLIP ViT-H/14, the same tower as open_clip's
    ("complexity_llm", "model"): (15.7e9, 0.005),
}


@pytest.fixture(scope="module")
def full_counts():
    return rehearsal.parameter_counts("full")


@pytest.mark.parametrize("role, component", sorted(PUBLISHED))
def test_full_size_model_has_the_published_parameter_count(full_counts, role, component):
    expected, tolerance = PUBLISHED[role, component]
    assert full_counts[role][component] == pytest.approx(expected, rel=tolerance)


def test_full_size_models_that_have_no_published_count_agree_with_their_published_relatives(full_counts):
    # unCLIP's UNet is SD 2.1's plus the projection of the noised image embedding (2 x 1024 -> 1280 -> 1280).
    projection = 2 * 1024 * 1280 + 1280 + 1280 * 1280 + 1280
    assert full_counts["unclip"]["unet"] - full_counts["text2img"]["unet"] == projection
    # SD 2's text encoder is OpenCLIP ViT-H/14's text tower without its last block and its text projection (the
    # open_clip "text" count, model minus image tower, also holds the logit scale).
    block = 12 * 1024**2 + 13 * 1024  # attention (4 d^2 + 4 d) + MLP (8 d^2 + 5 d) + two LayerNorms (4 d)
    assert full_counts["unclip"]["text_encoder"] == full_counts["fg_encoder"]["text"] - block - 1024**2 - 1
    assert full_counts["text2img"]["text_encoder"] == full_counts["unclip"]["text_encoder"]
    assert full_counts["unclip"]["image_normalizer"] == 2 * 1024  # CLIP embedding mean and std


def test_full_size_diffusion_pipelines_work_at_768_px():
    for model in ("stable-diffusion-2-1-unclip", "stable-diffusion-2-1"):
        unet = rehearsal.published_config(model, "unet")
        vae = rehearsal.published_config(model, "vae")
        assert unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1) == vae["sample_size"] == 768
        assert rehearsal.published_config(model, "scheduler")["prediction_type"] == "v_prediction"
    image = rehearsal.published_config("stable-diffusion-2-1-unclip", "image_encoder")
    assert (
        rehearsal.published_config("stable-diffusion-2-1-unclip", "unet")["projection_class_embeddings_input_dim"]
        == 2 * image["projection_dim"]
    )


def test_small_size_keeps_each_architecture_and_only_shrinks_it():
    counts = rehearsal.parameter_counts("small")
    assert all(0 < count < 20 * M for role in counts.values() for count in role.values())
    for model in ("stable-diffusion-2-1-unclip", "stable-diffusion-2-1"):
        for component in ("unet", "vae"):
            full, small = (rehearsal.published_config(model, component, size) for size in ("full", "small"))
            for key in ("down_block_types", "up_block_types", "class_embed_type", "upcast_attention"):
                assert small.get(key) == full.get(key), (model, component, key)
    full, small = (rehearsal.published_config("DeepSeek-V2-Lite-Chat", "config.json", s) for s in ("full", "small"))
    for key in ("first_k_dense_replace", "q_lora_rank", "topk_method", "rope_scaling", "vocab_size", "bos_token_id"):
        assert small[key] == full[key], key


@pytest.mark.slow
def test_small_models_load_through_the_loaders_of_real_checkpoints(tmp_path):
    from PIL import Image

    from genview.models.chat_llm import load_chat_model
    from genview.models.diffusion import load_pipeline
    from genview.models.open_clip_models import load_open_clip, patch_tokens, token_map_and_embedding

    rehearsal.build_rehearsal_models(tmp_path, "small", variants={"unclip": "fp16"})
    assert list((tmp_path / "unclip/unet").glob("*.fp16.safetensors")), "saved as the variant the config loads"
    image = Image.new("RGB", (80, 60), (200, 30, 30))
    unclip = load_pipeline("unclip", {"path": str(tmp_path / "unclip"), "variant": "fp16"})
    view = unclip(image=[image], noise_level=100, num_inference_steps=1, output_type="pil").images[0]
    assert view.size == (64, 64)  # the small size's native resolution (full: 768)
    text2img = load_pipeline("text2img", {"path": str(tmp_path / "text2img")})
    assert type(text2img.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert text2img.tokenizer.pad_token == "!"
    assert text2img(prompt=["a red circle"], num_inference_steps=1, output_type="pil").images[0].size == (64, 64)
    fg, preprocess = load_open_clip({"model": f"local-dir:{tmp_path / 'fg_encoder'}"})
    assert patch_tokens(fg, preprocess(image)[None]).shape == (1, 16, 64)
    quality, preprocess = load_open_clip({"model": f"local-dir:{tmp_path / 'quality_encoder'}"}, role="quality_encoder")
    tokens, embedding = token_map_and_embedding(quality, preprocess(image)[None])
    assert tokens.shape[1:3] == (2, 2) and embedding.shape == (1, 32)
    chat = load_chat_model(str(tmp_path / "complexity_llm"), trust_remote_code=True, max_new_tokens=4)
    assert type(chat.model).__name__ == "DeepseekV2ForCausalLM" and chat.model.dtype == torch.float32
    prompt, _ = chat._prompt([{"role": "user", "content": "a red circle"}])
    assert prompt == "<｜begin▁of▁sentence｜>User: a red circle\n\nAssistant:"
    assert chat.tokenizer(prompt)["input_ids"][0] == 100000  # the published bos id
    assert isinstance(chat.generate([{"role": "user", "content": "a red circle"}]), str)


# --- the derived config -----------------------------------------------------------------------------------------


def test_rehearsal_runs_every_paper_experiment_and_evaluation():
    paper, ours = resolve_experiments(PAPER), resolve_experiments(REHEARSAL)
    assert sorted(ours) == sorted(paper) and len(ours) == 42
    for name, experiment in ours.items():
        original = paper[name]
        for key in ("method", "variant", "dataset", "backbone", "method_args", "views"):
            assert experiment[key] == original[key], (name, key)
        recipe = experiment["recipe"]
        assert (recipe["epochs"], recipe["batch_size"], recipe["warmup_epochs"]) == (2, 16, 1)
        for key in ("optimizer", "lr", "lr_scaling", "weight_decay", "multi_crop", "amp", "image_size"):
            assert recipe[key] == original["recipe"][key], (name, key)
        assert experiment["gpus"] == 1
        if original["quality"]["epoch_switch"]:
            assert experiment["quality"]["epoch_switch"] == 1  # the later coefficients run in epoch 2 of 2
            assert experiment["quality"]["later_coefs"] == original["quality"]["later_coefs"]
    assert set(resolve_evaluations(REHEARSAL, ours)) == set(resolve_evaluations(PAPER, paper))
    assert REHEARSAL["report"] == PAPER["report"]


def test_every_rehearsal_dataset_is_made_in_its_paper_format():
    for section in ("datasets", "eval_datasets"):
        assert set(REHEARSAL[section]) == set(PAPER[section])
        for name, spec in REHEARSAL[section].items():
            original = PAPER[section][name]
            assert spec["root"].startswith("results/datasets/"), name
            if name not in ("cifar10", "cifar100", "flowers102"):  # torchvision checks those files' MD5 sums
                assert spec["kind"] == original["kind"], name
            for key in ("splits", "holdout", "sources", "generation", "image_column", "caption_column"):
                if key in original:
                    assert spec[key] == original[key], (name, key)
    # The GPU-hour estimate counts this run's images, not the paper's.
    assert set(REHEARSAL["estimate"]["images"]) == set(PAPER["estimate"]["images"])
    assert max(REHEARSAL["estimate"]["images"].values()) < 1000
    made = {n for s in ("datasets", "eval_datasets") for n, spec in REHEARSAL[s].items() if spec.get("synthetic")}
    shared = {"cc3m_fixed": "cc3m", "imagenet100": "imagenet1k"}  # read another's images, as in the paper config
    assert made == (set(REHEARSAL["datasets"]) | set(REHEARSAL["eval_datasets"])) - set(shared)


def test_cpu_rehearsal_changes_only_sizes():
    assert resolve_experiments(CPU).keys() == resolve_experiments(REHEARSAL).keys()
    for name, experiment in resolve_experiments(CPU).items():
        original = resolve_experiments(REHEARSAL)[name]
        for key in ("method", "variant", "views", "quality", "peak_lr"):
            assert experiment[key] == original[key], (name, key)
        assert experiment["recipe"]["image_size"] == 32
    assert CPU["models"]["unclip"]["path"] == "results/models/rehearsal/small/unclip"
    sizes = ("models", "pretrain", "generation", "evaluation", "datasets")
    assert {k: v for k, v in CPU.items() if k not in sizes} == {k: v for k, v in REHEARSAL.items() if k not in sizes}
    for name, spec in CPU["datasets"].items():
        assert spec == {**REHEARSAL["datasets"][name], "num_shards": 1}
    assert CPU["evaluation"] == {**REHEARSAL["evaluation"], "num_workers": 0}


def test_merge_patch_follows_rfc_7396():
    target = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None}
    patch = {"a": None, "b": {"c": 3, "d": [9]}, "f": {"g": 1}}
    assert merge_patch(target, patch) == {"b": {"c": 3, "d": [9]}, "e": None, "f": {"g": 1}}
    assert target == {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None}, "inputs are not changed"


def test_each_recipe_patch_refines_only_switched_on_settings(tmp_path):
    derived = {"derive": {"from": "config/paper.yaml", "each": {"recipe": {"epochs": 1, "multi_crop": {"size": 8}}}}}
    config = derive_config(derived, REPO)
    recipes = config["pretrain"]["recipes"]
    assert {recipe["epochs"] for recipe in recipes.values()} == {1}
    assert recipes["swav_200e"]["multi_crop"]["size"] == 8 and recipes["swav_200e"]["multi_crop"]["number"] == 6
    assert recipes["mocov2_200e"]["multi_crop"] is None


def test_derive_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"derive\.base: unknown key \(allowed here: each, from\)"):
        derive_config({"derive": {"from": "config/paper.yaml", "base": 1}}, REPO)
    loop = tmp_path / "loop.yaml"
    loop.write_text(yaml.safe_dump({"derive": {"from": str(loop)}}, sort_keys=False))
    with pytest.raises(ConfigError, match="derives from itself"):
        derive_config(read_yaml(loop), REPO)
    with pytest.raises(ConfigError, match="not found"):
        derive_config({"derive": {"from": "config/no_such.yaml"}}, REPO)


# --- synthetic datasets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["imagenet1k", "cc3m", "cifar10", "aircraft", "dtd", "pets", "caltech101", "food101", "sun397", "flickr30k"]
)
def test_synthetic_dataset_is_indexed_through_its_kind(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    section = "datasets" if name in REHEARSAL["datasets"] else "eval_datasets"
    spec = merge_patch(REHEARSAL[section][name], {"synthetic": {"classes": 3, "image_size": 32}})
    marker = make_synthetic(name, spec)
    assert json.loads(marker.read_text())["dataset"] == name
    manifest = index_dataset(name, spec, tmp_path / "index")
    per_image = 5 if name == "flickr30k" else 1
    if name == "cc3m":  # no split column: every row is a training caption
        assert len(manifest) == 3 * 4 and set(manifest.split) == {"train"} and manifest.caption.str.len().min() > 0
        return
    if name == "flickr30k":
        assert manifest.groupby("label").size().eq(per_image).all(), "five distinct captions per image"
        assert set(manifest.split) == {"train", "val", "test"}
        return
    assert manifest.label.nunique() == 3
    # The paper's splits: val for the sets its probe tests on val, SUN397 whole (one split), a holdout for Caltech.
    splits = {"aircraft": ["train", "val", "test"], "dtd": ["train", "val", "test"], "sun397": ["train"]}
    expected = splits.get(name, ["train", "test"])
    assert set(manifest.split) == set(expected)
    assert len(manifest) == 3 * (4 + 2 * max(len(expected) - 1, 1))  # 4 train and 2 per other split, per class


def test_synthetic_cannot_stand_in_for_checksummed_torchvision_sets(tmp_path):
    spec = dict(
        PAPER["eval_datasets"]["cifar10"],
        root=str(tmp_path),
        synthetic={
            "seed": 0,
            "image_size": 32,
            "classes": 2,
            "train_per_class": 1,
            "test_per_class": 1,
            "captions_per_image": 1,
        },
    )
    with pytest.raises(ConfigError, match="cifar10.synthetic: .*MD5"):
        make_synthetic("cifar10", spec)


# --- the workflow ---------------------------------------------------------------------------------------------------


@pytest.mark.workflow
def test_rehearsal_dry_run_plans_every_table_protocol_and_experiment(workdir):
    result = snakemake("-n", "--cores", "1", "--configfile", REPO / "config/rehearsal.yaml", workdir=workdir)
    counts = job_counts(result.stdout)
    experiments = resolve_experiments(REHEARSAL)
    evaluations = resolve_evaluations(REHEARSAL, experiments)
    assert counts["pretrain"] == len(experiments) == len(resolve_experiments(PAPER))
    assert evaluations.keys() == resolve_evaluations(PAPER, resolve_experiments(PAPER)).keys()
    # linear and semisup one job each; features and the protocols on them one job per (experiment, dataset).
    assert counts["evaluate"] == sum(p not in CACHED_PROTOCOLS for _, p, _ in evaluations)
    assert counts["evaluate_cached"] == len({(e, d) for e, _, d in evaluations})
    planned = set(re.findall(r"^    wildcards: experiment=\S+, protocol=(\w+)", result.stdout, re.MULTILINE))
    assert planned == {"linear", "semisup"} and {p for _, p, _ in evaluations} == {
        "linear",
        "linear_fast",
        "knn",
        "semisup",
        "zeroshot",
        "retrieval",
    }
    tables = {f"table_{name}" for name in load_table_specs(REPO / REHEARSAL["report"]["tables"])}
    assert {name for name in counts if name.startswith("table_")} == tables | {"table_cost"}
    assert {"figure_tsne", "figure_gallery", "figure_quality"} <= set(counts)
    assert counts["build_rehearsal_models"] == 1 and "build_tiny_models" not in counts
    assert "results/models/rehearsal/full/complexity_llm/config.json" in result.stdout
    assert counts["make_synthetic"] == 13 and counts["index_dataset"] == 15
    datasets = REHEARSAL["datasets"]
    assert counts["generate_views"] == sum(len(s["sources"]) * s["num_shards"] for s in datasets.values()) == 14
    build = snakemake(
        "results/models/rehearsal/full/unclip/model_index.json",
        "results/datasets/cc3m/synthetic.json",
        "-n",
        "-p",
        "--cores",
        "1",
        "--configfile",
        REPO / "config/rehearsal.yaml",
        workdir=workdir,
    ).stdout
    assert "rehearsal build --size full" in build and "--variant unclip=fp16" in build
    # The synthetic files depend on the layout settings only: cc3m_fixed's shards or sources do not rewrite them.
    command = next(line for line in build.splitlines() if "make-synthetic --dataset cc3m" in line)
    assert '"file": "cc3m_train.csv"' in command and "num_shards" not in command and "sources" not in command


# The CPU test runs the part of the CPU rehearsal that reaches every rule (except the tables and the cost table, which
# need every experiment), every dataset (indexed through its kind's reader), every view source and every protocol:
# one SSL experiment with its four ImageNet protocols; GenView++ CLIP with zero-shot on an image-folder, a
# torchvision-exported and a class-folder stand-in set, retrieval on Flickr30k and the ImageNet-100 probe; the
# fixed-conditioning ablation run; the three figures. GENVIEW_REHEARSAL=full runs all of it (600-odd jobs).
SSL_PICK, VL_PICK = "imagenet1k_mocov2_genview", "cc3m_clip_genview"
VL_EVALUATIONS = {
    ("zeroshot", "imagenet1k"),
    ("zeroshot", "cifar100"),
    ("zeroshot", "caltech101"),
    ("retrieval", "flickr30k"),
    ("linear", "imagenet100"),
}


def cpu_rehearsal_targets() -> list[str]:
    evaluations = resolve_evaluations(CPU, resolve_experiments(CPU))
    picked = [(e, p, d) for e, p, d in evaluations if e == SSL_PICK or (e == VL_PICK and (p, d) in VL_EVALUATIONS)]
    assert len(picked) == 4 + len(VL_EVALUATIONS)
    datasets = sorted({**CPU["datasets"], **CPU["eval_datasets"]})
    return (
        sorted({result_file(e, p, d) for e, p, d in picked})
        + [f"results/data/{d}/manifest.csv" for d in datasets]
        + ["results/pretrain/cc3m_fixed_clip_genview/checkpoint.pt", "figure_gallery", "figure_quality", "figure_tsne"]
    )


@pytest.mark.workflow
@pytest.mark.slow
def test_cpu_rehearsal_runs_end_to_end(workdir):
    cpu = ["--configfile", REPO / "config/rehearsal_cpu.yaml"]
    full = os.environ.get("GENVIEW_REHEARSAL") == "full"
    targets = [] if full else cpu_rehearsal_targets()
    plan = job_counts(snakemake(*targets, "-n", "--cores", "1", *cpu, workdir=workdir).stdout)
    whole = job_counts(snakemake("-n", "--cores", "1", *cpu, workdir=workdir).stdout)
    assert set(plan) >= {rule for rule in whole if not rule.startswith("table_") and rule != "all"}
    assert plan["index_dataset"] == 15 and plan["generate_views"] == whole["generate_views"] == 7
    started = time.monotonic()
    snakemake(*targets, "--cores", "all", *cpu, workdir=workdir, timeout=7200)
    print(f"CPU rehearsal: {plan['total']} jobs in {time.monotonic() - started:.0f} s")

    evaluations = resolve_evaluations(CPU, resolve_experiments(CPU))
    ran = evaluations if full else [(e, p, d) for e, p, d in evaluations if result_file(e, p, d) in targets]
    for experiment, protocol, dataset in ran:
        result = read_result(experiment, protocol, dataset, root=str(workdir / "results/eval"))
        assert result["metrics"] and result["provenance"]["device"] == "cpu", (experiment, protocol, dataset)
    assert {p for _, p, _ in ran} == {
        "linear",
        "linear_fast",
        "knn",
        "semisup",
        "zeroshot",
        "retrieval",
    }
    for name in {**CPU["datasets"], **CPU["eval_datasets"]}:
        manifest = pd.read_csv(workdir / f"results/data/{name}/manifest.csv", keep_default_na=False)
        assert manifest.label.nunique() >= 6 or name.startswith("cc3m"), name
        # SUN397 is one whole set, as the official probe trains and tests on it (config/paper.yaml).
        assert name.startswith("cc3m") or {"train", "test" if name != "sun397" else "train"} <= set(manifest.split), (
            name
        )
    for dataset, spec in CPU["datasets"].items():
        train = pd.read_csv(workdir / f"results/data/{dataset}/manifest.csv", keep_default_na=False)
        train = train[train.split == "train"]
        for source in spec["sources"]:
            views = pd.read_csv(workdir / f"results/views/{dataset}/{source}.manifest.csv")
            assert sorted(views.id) == sorted(train.id), (dataset, source)
            size = spec.get("generation", {}).get("save_size", CPU["generation"]["save_size"])
            assert Image.open(workdir / views.view.iloc[0]).size == (size, size)
            if dataset == "cc3m_fixed" and source != "tc":
                assert set(views.noise_level) == {200}
    complexity = pd.read_csv(workdir / "results/analysis/cc3m/complexity/0.csv")
    # The random-weight LLM was asked llm_attempts times per caption, then the lexical score was used.
    assert set(complexity.llm_attempts) == {CPU["analysis"]["llm_attempts"]}
    assert set(complexity.complexity_source) == {"lexical-fallback"}
    foreground = pd.read_csv(workdir / "results/analysis/imagenet1k/foreground/0.csv")
    assert set(foreground.noise_level) <= {0, 100, 200, 300, 400}
    for figure in ("tsne", "gallery_ic", "gallery_tc", "quality_audit"):
        Image.open(workdir / f"results/figures/{figure}.png").verify()
    checkpoint = torch.load(workdir / "results/pretrain/cc3m_fixed_clip_genview/checkpoint.pt", weights_only=False)
    assert checkpoint["steps"] == 2 * 3 and checkpoint["experiment"]["quality"]["epoch_switch"] == 1
