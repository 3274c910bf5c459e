"""What the tests share apart from fixtures (those are in conftest.py, or in the one module that uses them): the
checkout's paths, tools run as `make` runs them, the small inputs many tests build (an indexed `shapes` set, a
one-experiment config, placeholder dataset folders), the command lines of the genview jobs and the contracts' checks.
Test modules import from here: ``from helpers import ...``."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from genview.contracts import OUTPUTS, output_pattern

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# --- the workflow's files and its tools -------------------------------------------------------------------------------
# What a run of the workflow needs from the checkout, besides the installed package and .venv.
WORKFLOW_FILES = (
    "Snakefile",
    "rules",
    "config",
    "envs",
    "report",
    "profiles",
    "Makefile",
    "requirements.txt",
    "pyproject.toml",
)


def copy_workflow(dest: Path) -> Path:
    """The workflow's own files in ``dest`` (a fresh folder, so a test can edit a rule or run a profile there)."""
    import shutil

    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def tool_env(*first: Path) -> dict[str, str]:
    """This process's environment with this interpreter's folder first on PATH (as `make` runs the tools), after
    the folders ``first`` if given (e.g. a shim standing in for `python`)."""
    path = os.pathsep.join([*map(str, first), str(VENV_BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path}


def run_tool(args, cwd=REPO, check=True, timeout=900):
    """Run a command with this interpreter's environment first on PATH (as `make` does)."""
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def snakemake_command(*args, workdir: Path) -> list[str]:
    """The command line of the repository's workflow run in ``workdir`` (its Snakefile, that folder as its working
    directory), with ``args`` after."""
    return [str(a) for a in (VENV_BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", workdir, *args)]


def snakemake(*args, workdir: Path, check=True, timeout=900):
    """Run the repository's workflow in ``workdir`` (so tests never write into the checkout)."""
    return run_tool(snakemake_command(*args, workdir=workdir), cwd=workdir, check=check, timeout=timeout)


def slurm_snakemake_command(limit_s: int, *args, default_resources: list[str]) -> list:
    """Snakemake through profiles/slurm on the tests' local cluster (tests/slurm_cluster.py), under `timeout`
    (SIGINT after ``limit_s``, then SIGKILL: the plugin's poll loop ignores SIGTERM): ``args`` (targets, config
    files), the test-cluster settings (no slurmdbd, so job states come from squeue; a first poll soon after
    submitting), then --default-resources ``default_resources``."""
    return [
        "timeout",
        "-s",
        "INT",
        "-k",
        "10",
        str(limit_s),
        VENV_BIN / "snakemake",
        *args,
        "--workflow-profile",
        "profiles/slurm",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--default-resources",
        *default_resources,
    ]


# --- configs and data -------------------------------------------------------------------------------------------------
def raw_config(name: str) -> dict:
    """config/``name`` as its YAML reads (no defaults filled in, not validated): for a test to edit and write back."""
    return yaml.safe_load((REPO / "config" / name).read_text())


def placeholder_datasets(config: dict, base: Path) -> dict:
    """``config`` with every dataset root moved under ``base`` and the folders and files the config check looks for
    made there, empty (split and class folders, CSV headers, JSON and class-list files): a paper-scale config that
    passes `genview config check` on a machine without its data, for dry runs."""
    config = copy.deepcopy(config)
    for section in ("datasets", "eval_datasets"):
        for name, spec in config.get(section, {}).items():
            if spec["kind"] == "shapes":
                continue
            root = base / name
            root.mkdir(parents=True, exist_ok=True)
            spec["root"] = str(root)
            if spec["kind"] == "imagefolder":
                classes = ["n00000001"]
                if isinstance(spec.get("classes"), str):
                    (root / spec["classes"]).write_text("\n".join(classes) + "\n")
                for folder in spec.get("splits", {"train": "train"}).values():
                    for label in classes:
                        (root / folder / label).mkdir(parents=True, exist_ok=True)
            elif spec["kind"] == "csv":
                spec["file"] = Path(spec["file"]).name
                columns = [
                    spec.get(key, default)
                    for key, default in (("image_column", "image"), ("caption_column", "caption"))
                ]
                columns += [spec[key] for key in ("label_column", "split_column", "mask_column") if spec.get(key)]
                (root / spec["file"]).write_text(",".join(c for c in columns if c) + "\n")
            elif spec["kind"] == "karpathy":
                spec["file"] = "karpathy.json"
                (root / spec["file"]).write_text(json.dumps({"images": []}))
    return config


def placeholder_paper_config(path: Path, data: Path) -> dict:
    """config/paper.yaml with its dataset roots on placeholder folders under ``data`` (:func:`placeholder_datasets`),
    written to ``path`` (keys in the file's order); returns the config."""
    config = placeholder_datasets(raw_config("paper.yaml"), data)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def shapes_spec() -> dict:
    """The dataset entry of a plain `shapes` set, with every default filled in (as the jobs receive it)."""
    from genview.config.load import validate_config

    return validate_config({"datasets": {"s": {"kind": "shapes"}}})["datasets"]["s"]


def indexed_shapes(root: Path, train_per_class: int, test_per_class: int = 1):
    """A small `shapes` set generated and indexed under ``root`` (as the workflow does, relative to its working
    directory); returns the manifest with absolute paths, also written to ``root/manifest.csv``."""
    import contextlib

    from genview.data.index import index_dataset
    from genview.data.shapes import make_shapes

    with contextlib.chdir(root):
        make_shapes("results/datasets/s", train_per_class=train_per_class, test_per_class=test_per_class)
        manifest = index_dataset("s", shapes_spec(), "results/data/s")
    for column in ("path", "mask"):
        manifest[column] = [str(root / p) for p in manifest[column]]
    manifest.to_csv(root / "manifest.csv", index=False)
    return manifest


def one_experiment_config(
    method: str,
    recipe: dict,
    backbone: dict,
    *,
    variant: str = "baseline",
    method_args: dict | None = None,
    sources: list[str] | None = None,
    views: dict | None = None,
) -> dict:
    """A validated config of one pre-training experiment `e` of ``method``: recipe `r`, backbone `b`, on the
    `shapes` dataset `s` (with view ``sources`` when given), with ``method_args`` and, when given, ``views``.
    The arguments are copied, never filled in place."""
    from genview.config.load import validate_config

    dataset = {"kind": "shapes"} if sources is None else {"kind": "shapes", "sources": sources}
    experiment = {
        "method": method,
        "variant": variant,
        "recipe": "r",
        "backbone": "b",
        "dataset": "s",
        "method_args": method_args or {},
    }
    if views is not None:
        experiment["views"] = views
    config = {
        "datasets": {"s": dataset},
        "pretrain": {"recipes": {"r": recipe}, "backbones": {"b": backbone}, "experiments": {"e": experiment}},
    }
    return validate_config(copy.deepcopy(config))


#: The tiny heads of the training tests' methods.
TINY_METHOD_ARGS = {
    "simclr": {"proj_hidden_dim": 32, "proj_dim": 16},
    "mocov2": {"proj_hidden_dim": 32, "proj_dim": 16, "queue_size": 64},
    "clip": {"embed_dim": 16, "text_width": 16, "text_heads": 2, "text_layers": 1, "context_length": 16},
}


def tiny_experiment(method: str, variant: str = "baseline", **recipe) -> dict:
    """The resolved experiment of a training test: ``method`` (``variant``) with a one-block 16 px ViT and
    :data:`TINY_METHOD_ARGS`, 2 views from source `ic`; 3 epochs of batch 8 at lr 0.1 unless ``recipe`` says other."""
    from genview.training.experiments import resolve_experiments

    config = one_experiment_config(
        method,
        {"epochs": 3, "batch_size": 8, "lr": 0.1, "image_size": 16, **recipe},
        {"name": "vit", "image_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
        variant=variant,
        method_args=TINY_METHOD_ARGS,
        sources=["ic"],
        views={"n_views": 2},
    )
    return resolve_experiments(config)["e"]


def checkpoint_weights(path: Path) -> dict:
    """A checkpoint's step count and method tensors, flat (``method.<name>``), loaded on the CPU: what two runs that
    must end alike are compared on."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return {"steps": checkpoint["steps"], **{f"method.{k}": v for k, v in checkpoint["method"].items()}}


# --- command lines of the genview jobs --------------------------------------------------------------------------------
def _json(value) -> str:
    """A JSON argument: a string as given, anything else dumped."""
    return value if isinstance(value, str) else json.dumps(value)


def genview_command(*args) -> list[str]:
    """`python -m genview ARGS` with this interpreter, for a subprocess."""
    return [sys.executable, "-m", "genview", *map(str, args)]


def pretrain_run_args(experiment, out_dir, manifest, *options, views=None) -> list[str]:
    """The arguments of `genview pretrain run`: ``experiment`` (a dict, sent as JSON, or a string as given), its
    output folder and manifest, the view manifest ``views`` if given, then ``options`` (e.g. "--device", "cpu")."""
    args = ["pretrain", "run", "--experiment", _json(experiment), "--out-dir", out_dir, "--manifest", manifest]
    if views is not None:
        args += ["--views", views]
    return [str(a) for a in (*args, *options)]


def evaluation_cached_args(
    checkpoint, manifest, dataset, experiment, spec, features, out, *options, protocols=None
) -> list[str]:
    """The arguments of `genview evaluation cached` (features, then the cached protocols on them): ``spec`` and
    ``protocols`` as dicts (sent as JSON) or strings, ``protocols`` only if given, then ``options``."""
    args = ["evaluation", "cached", "--checkpoint", checkpoint, "--manifest", manifest, "--dataset", dataset]
    args += ["--experiment", experiment, "--spec", _json(spec)]
    if protocols is not None:
        args += ["--protocols", _json(protocols)]
    return [str(a) for a in (*args, "--features", features, "--out", out, *options)]


def evaluation_run_args(
    protocol, experiment, checkpoint, dataset, spec, features, settings, out, *options
) -> list[str]:
    """The arguments of `genview evaluation run` (one protocol that is not cached): ``spec`` and ``settings`` as
    dicts (sent as JSON) or strings, then ``options``."""
    args = ["evaluation", "run", "--protocol", protocol, "--experiment", experiment, "--checkpoint", checkpoint]
    args += ["--dataset", dataset, "--spec", _json(spec), "--features", features, "--settings", _json(settings)]
    return [str(a) for a in (*args, "--out", out, *options)]


def generation_views_args(source, shard, views_dir, out, generation, model, *options, foreground=None) -> list[str]:
    """The arguments of `genview generation views` for one shard: ``generation`` and ``model`` as dicts (sent as
    JSON) or strings, the adaptive parameters ``foreground`` if given, then ``options``."""
    args = ["generation", "views", "--source", source, "--shard", shard]
    if foreground is not None:
        args += ["--foreground", foreground]
    args += ["--views-dir", views_dir, "--out", out, "--generation", _json(generation), "--model", _json(model)]
    return [str(a) for a in (*args, *options)]


# --- the README's `make run` of the smoke config (tests/test_smoke_run.py, tests/test_reliability.py), job counts ----
MAKE_RUN = ["make", "-o", ".venv/.installed", "run", "CONFIG=config/smoke.yaml"]  # the README's command


def job_counts(dry_run_stdout: str) -> dict[str, int]:
    table = dry_run_stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


# --- the contracts' output paths against the rules (tests/test_contracts.py, tests/test_smoke_run.py) -----------------
#: Rules that write no file: the default target and the error shown for an unknown report target.
NO_OUTPUT_RULES = {"all", "unknown_report_target"}


def _rule_pattern(rule: str):
    return re.compile(re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(rule)) + "$")


def rule_problems(rules: list[str], outputs=OUTPUTS) -> list[str]:
    """Rules that write no declared output, and declared rules that are no rule."""
    declared = [pattern for output in outputs for pattern in output.rules]
    problems = [
        f"rule {rule}: no output of genview.contracts.OUTPUTS names it"
        for rule in rules
        if rule not in NO_OUTPUT_RULES and not any(_rule_pattern(p).match(rule) for p in declared)
    ]
    problems += [
        f"OUTPUTS names {p!r}: no such rule" for p in declared if not any(_rule_pattern(p).match(r) for r in rules)
    ]
    return problems


def file_problems(written: list[tuple[str, str]], outputs=OUTPUTS) -> list[str]:
    """(file, rule) pairs of a finished run that no declared path of that rule matches."""
    return [
        f"{path} (rule {rule}): no path of genview.contracts.OUTPUTS for this rule matches it"
        for path, rule in written
        if not any(
            any(_rule_pattern(p).match(rule) for p in output.rules)
            and any(output_pattern(pattern).fullmatch(path) for pattern in output.paths)
            for output in outputs
        )
    ]
