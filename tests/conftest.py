import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


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


def run_tool(args, cwd=REPO, check=True, timeout=900):
    """Run a command with this interpreter's environment first on PATH (as `make` does)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
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

    from genview.config.load import validate_config
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


# --- one finished run of the smoke config, shared by the tests that only read it or dry-run against it --------------
MAKE_RUN = ["make", "-o", ".venv/.installed", "run", "CONFIG=config/smoke.yaml"]  # the README's command
KILL_AFTER_JOBS = 60  # about a third of the smoke run: data, views and some trainings done


def finished_jobs(log: str) -> int:
    import re

    return len(re.findall(r"^Finished jobid: \d+ ", log, re.MULTILINE))


def job_counts(dry_run_stdout: str) -> dict[str, int]:
    import re

    table = dry_run_stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`make run CONFIG=config/smoke.yaml` in a copy of the workflow (in a folder named with a space and an
    apostrophe), SIGKILLed a third of the way with its Snakemake
    and jobs, then run again to completion: the kill test checks the counts, and every test that only reads a
    finished run (or dry-runs against it, without changing its files) uses the same folder."""
    import signal
    import time
    from types import SimpleNamespace

    # A checkout path with a space and an apostrophe, as a user's may have: every path must reach the jobs quoted.
    root = copy_workflow(tmp_path_factory.mktemp("smoke_run") / "it's a checkout")
    (root / ".venv").symlink_to(REPO / ".venv")
    total = job_counts(run_tool([VENV_BIN / "snakemake", "-n", "--configfile", "config/smoke.yaml"], cwd=root).stdout)[
        "total"
    ]
    first_log = root / "first_run.log"
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(first_log, "w") as log:
        process = subprocess.Popen(
            MAKE_RUN, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 1200
    while process.poll() is None and time.monotonic() < deadline:
        if finished_jobs(first_log.read_text()) >= KILL_AFTER_JOBS:
            break
        time.sleep(0.2)
    assert process.poll() is None, f"the first run ended before the kill:\n{first_log.read_text()[-3000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    while True:  # the rerun comes after the crash, when every process of the killed run is gone
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    finished_before = finished_jobs(first_log.read_text())
    second = run_tool(MAKE_RUN, cwd=root, timeout=1800)
    return SimpleNamespace(
        root=root,
        total=total,
        finished_before=finished_before,
        finished_after=finished_jobs(second.stdout + second.stderr),
    )
