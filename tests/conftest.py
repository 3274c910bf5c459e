import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# What a run of the workflow needs from the checkout, besides the installed package and .venv.
WORKFLOW_FILES = ("Snakefile", "rules", "config", "envs", "report", "profiles", "Makefile", "requirements.txt",
                  "pyproject.toml")


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


def run_tool(args, cwd=REPO, check=True, timeout=900):
    """Run a command with this interpreter's environment first on PATH (as `make` does)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def snakemake(*args, workdir: Path, check=True, timeout=900):
    """Run the repository's workflow in ``workdir`` (so tests never write into the checkout)."""
    return run_tool(
        [VENV_BIN / "snakemake", "--snakefile", REPO / "Snakefile", "--directory", workdir, *args],
        cwd=workdir,
        check=check,
        timeout=timeout,
    )


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


def indexed_shapes(root: Path, train_per_class: int, test_per_class: int = 1):
    """A small `shapes` set generated and indexed under ``root`` (as the workflow does, relative to its working
    directory); returns the manifest with absolute paths, also written to ``root/manifest.csv``."""
    import contextlib

    from genview.config import validate_config
    from genview.data.index import index_dataset
    from genview.data.shapes import make_shapes

    with contextlib.chdir(root):
        make_shapes("results/datasets/s", train_per_class=train_per_class, test_per_class=test_per_class)
        spec = validate_config({"datasets": {"s": {"kind": "shapes"}}})["datasets"]["s"]
        manifest = index_dataset("s", spec, "results/data/s")
    for column in ("path", "mask"):
        manifest[column] = [str(root / p) for p in manifest[column]]
    manifest.to_csv(root / "manifest.csv", index=False)
    return manifest


def placeholder_datasets(config: dict, base: Path) -> dict:
    """``config`` with every dataset root moved under ``base`` and the folders and files the config check looks for
    made there, empty (split and class folders, CSV headers, JSON and class-list files): a paper-scale config that
    passes `genview config check` on a machine without its data, for dry runs."""
    import copy
    import json

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
                columns = [spec.get(key, default) for key, default in (("image_column", "image"),
                                                                        ("caption_column", "caption"))]
                columns += [spec[key] for key in ("label_column", "split_column", "mask_column") if spec.get(key)]
                (root / spec["file"]).write_text(",".join(c for c in columns if c) + "\n")
            elif spec["kind"] == "karpathy":
                spec["file"] = "karpathy.json"
                (root / spec["file"]).write_text(json.dumps({"images": []}))
    return config
