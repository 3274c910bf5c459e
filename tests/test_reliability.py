"""Faults a user meets, reproduced as they meet them (docs/reliability.md, "Faults and what to do"): a second process
writing the same outputs, a Snakemake killed with its jobs still running, `make run` beside a plain `snakemake`.
Each test checks the message and that nothing finished is lost. (The checkout path with a space and an apostrophe
is the smoke run's own path: tests/test_smoke_run.py, smoke_run.)"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import (
    MAKE_RUN,
    REPO,
    VENV_BIN,
    copy_workflow,
    genview_command,
    indexed_shapes,
    job_counts,
    pretrain_run_args,
    raw_config,
    run_tool,
    snakemake,
    tool_env,
)

from genview.runtime.processes import LOCK_FILE, output_lock

ENV = tool_env()


def wait_for(condition, timeout=60.0, what="a condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process writing ``folder`` (it holds the writer lock until killed)."""
    code = f"from genview.runtime.processes import output_lock\nwith output_lock({str(folder)!r}, 'x'):\n    input()"
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, env=ENV, cwd=REPO)
    wait_for(lambda: (folder / LOCK_FILE).is_file() and (folder / LOCK_FILE).read_text().strip(), what="the lock")
    return process


def test_a_second_trainer_refuses_to_write_into_a_folder_another_one_writes(tmp_path):
    out_dir = tmp_path / "results/pretrain/exp"
    out_dir.mkdir(parents=True)
    (out_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    first = hold_lock(out_dir)
    try:
        second = run_tool(genview_command(*pretrain_run_args("{}", out_dir, tmp_path / "manifest.csv")), check=False)
        assert second.returncode == 75, second.stderr
        assert f"{out_dir} is being written by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert (out_dir / "metrics.jsonl").read_text() == '{"step": 1}\n', "the running trainer's outputs are untouched"
    finally:
        first.kill()
        first.wait()
    with output_lock(out_dir, "x"):  # released by the kill: the next writer goes ahead
        pass


@pytest.mark.workflow
def test_a_job_ends_when_its_snakemake_is_killed_and_a_rerun_never_runs_beside_it(tmp_path):
    """SIGKILL of Snakemake alone (its job still running, as after `kill -9 <snakemake pid>`): the orphaned job ends
    by itself within seconds, so the rerun after `snakemake --unlock` never shares its outputs with it; while it runs,
    a second writer of its folder is refused."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule long_job:
                output: "out/done.txt"
                shell: "python -c 'import os, time\\n"
                       "from genview.runtime.processes import end_with_snakemake, output_lock\\n"
                       "end_with_snakemake(0.2)\\nwith output_lock(\\"out\\", \\"long_job\\"):\\n"
                       "    open(\\"out/pid\\", \\"w\\").write(str(os.getpid())); time.sleep(300)' 2> job.log"
            """
        )
    )
    env = {**ENV, "PYTHONPATH": str(REPO)}
    snake = subprocess.Popen(
        [VENV_BIN / "snakemake", "--cores", "1", "--snakefile", tmp_path / "Snakefile", "-d", tmp_path],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file = tmp_path / "out/pid"
    wait_for(lambda: pid_file.is_file() and pid_file.read_text(), what="the job to start")
    job = int(pid_file.read_text())
    with pytest.raises(Exception, match="is being written by pid"), output_lock(tmp_path / "out", "a rerun"):
        pass
    snake.send_signal(signal.SIGKILL)
    snake.wait()
    wait_for(lambda: not alive(job), timeout=15, what="the orphaned job to end")
    assert "the Snakemake that started this job" in (tmp_path / "job.log").read_text()
    with output_lock(tmp_path / "out", "a rerun"):  # the rerun can write now
        pass


@pytest.mark.workflow
def test_make_run_leaves_the_lock_of_a_live_snakemake_in_place(tmp_path):
    """A plain `snakemake` runs in the checkout (here a process named so, working there); `make run` must not remove
    its lock and run the same jobs beside it."""
    root = copy_workflow(tmp_path / "wf")
    (root / ".venv").symlink_to(REPO / ".venv")
    lock = root / ".snakemake/locks/0.output.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("results/x\n")
    fake = tmp_path / "bin/snakemake"
    fake.parent.mkdir()
    fake.write_text("import time\ntime.sleep(300)\n")
    running = subprocess.Popen([sys.executable, fake, "--cores", "all"], cwd=root)
    try:
        wait_for(lambda: os.path.realpath(f"/proc/{running.pid}/cwd") == str(root.resolve()), what="the process")
        result = run_tool(MAKE_RUN, cwd=root, check=False, timeout=120)
    finally:
        running.kill()
        running.wait()
    assert result.returncode != 0
    assert f"Snakemake already runs in {root.resolve()} (pid {running.pid}" in result.stderr
    assert lock.read_text() == "results/x\n", "the live lock is left in place"
    assert not (root / "results").exists(), "no job ran"


def smoke_with(tmp_path: Path, **shapes) -> Path:
    import yaml

    config = raw_config("smoke.yaml")
    config["datasets"]["shapes"].update(shapes)
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_absurd_shard_counts_are_stopped_before_the_dag_is_built(tmp_path, monkeypatch, capsys):
    """num_shards: 100000 built a DAG for 11 minutes until killed; more shards than images scheduled empty shards."""
    from genview.cli import main
    from genview.data.shard import write_shards
    from genview.errors import BadInputError

    monkeypatch.chdir(tmp_path)  # not the checkout, whose results/ may hold an indexed shapes set
    assert main(["config", "check", str(smoke_with(tmp_path, num_shards=100_000))]) == 0
    assert "warning: datasets.*.num_shards (shapes: 100000) make about" in capsys.readouterr().err
    # Once the dataset is indexed (12 training images), 13 shards are an error naming the key, before any job.
    indexed_shapes(tmp_path, train_per_class=1)
    (tmp_path / "results/data/shapes").mkdir()
    shutil.copy(tmp_path / "results/data/s/manifest.csv", tmp_path / "results/data/shapes/manifest.csv")
    assert main(["config", "check", str(smoke_with(tmp_path, num_shards=13))]) == 2
    assert "datasets.shapes.num_shards: 13 shards for 12 training images" in capsys.readouterr().err
    assert main(["config", "check", str(smoke_with(tmp_path, num_shards=12))]) == 0
    # The shard job itself refuses too (a manifest too large to count at parse time is checked there).
    with pytest.raises(BadInputError, match="12 train image\\(s\\) for num_shards 13: set the dataset's num_shards"):
        write_shards("results/data/s/manifest.csv", 13, tmp_path / "shards")
    assert not (tmp_path / "shards").exists()


@pytest.mark.workflow
def test_sentences_instead_of_tracebacks(tmp_path):
    """`config check --print ... | head` ended in BrokenPipeError; `make run` with a missing config file or a YAML tab
    ended in Snakemake's traceback or in a message naming no file or line."""
    pipe = subprocess.run(
        f"{sys.executable} -m genview config check --print config/smoke.yaml | head -1",
        shell=True,
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert pipe.stdout == "standalone: true\n"
    assert pipe.stderr == ""
    root = copy_workflow(tmp_path / "wf")
    (root / ".venv").symlink_to(REPO / ".venv")
    (root / "tabs.yaml").write_text("datasets:\n\tshapes: {}\n")
    for config, message in (
        ("does_not_exist.yaml", "genview config: error: config file not found: does_not_exist.yaml"),
        ("tabs.yaml", "found character '\\t' that cannot start any token\n  in \"tabs.yaml\", line 2, column 1"),
    ):
        result = run_tool(["make", "-o", ".venv/.installed", "run", f"CONFIG={config}"], cwd=root, check=False)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    assert not (root / ".snakemake/locks").exists() and not (root / "results").exists(), "nothing ran"


@pytest.mark.workflow
def test_a_dataset_root_that_is_a_file_is_named_so_and_an_unused_dataset_is_not_indexed(tmp_path, workdir, capsys):
    import yaml

    from genview.cli import main

    (tmp_path / "pets.tar").write_bytes(b"not a folder")
    config = raw_config("smoke.yaml")
    config.setdefault("eval_datasets", {})["pets"] = {"kind": "imagefolder", "root": str(tmp_path / "pets.tar")}
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(config))
    # No evaluation reads it: nothing checks it, nothing indexes it.
    assert main(["config", "check", str(path)]) == 0
    counts = job_counts(snakemake("-n", "--cores", "1", "--configfile", path, workdir=workdir).stdout)
    assert counts["index_dataset"] == 1, "only the training set is indexed"
    config["evaluation"]["runs"].append({"protocols": ["knn"], "experiments": ["shapes_simclr_baseline"],
                                         "datasets": ["pets"]})  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["config", "check", str(path)]) == 2
    assert f"eval_datasets.pets.root: folder {tmp_path / 'pets.tar'} is a file, not a folder" in capsys.readouterr().err


def test_config_check_says_which_files_were_merged_and_where_each_key_came_from(tmp_path, capsys):
    """`datasets:` removed from a copy of config/config.yaml was silently taken from the embedded default."""
    import yaml

    from genview.cli import main

    copy = raw_config("config.yaml")
    del copy["datasets"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(copy))
    assert main(["config", "check", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"files, merged in this order: {REPO / 'config/config.yaml'} (the embedded default), {path}"
    from_default = next(line for line in lines if line.startswith(f"  from {REPO / 'config/config.yaml'}"))
    assert from_default.split(": ", 1)[1] == "datasets", "the one key the copy lacks comes from the default"
    assert any("say standalone: true in your file" in line for line in lines)


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs (needs root, as CI and the developers' machines run); skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", disk], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", disk], check=True)


def test_a_full_disk_is_named_with_the_file_and_nothing_finished_is_lost(small_disk):
    """torch.save on a full disk said `RuntimeError ... unexpected pos 445056 vs 444944`."""
    import torch

    from genview.io import DiskFullError, atomic_path
    from genview.training.train import _save

    checkpoint = small_disk / "results/pretrain/x/checkpoint.pt"
    _save({"w": torch.zeros(1000)}, checkpoint)  # a finished checkpoint
    finished = checkpoint.read_bytes()
    # Size known (a checkpoint's tensors): refused before anything is written.
    with pytest.raises(DiskFullError, match=f"disk full: cannot write {checkpoint} \\(1.0 MiB needed\\): 0.[0-9] MiB"):
        _save({"w": torch.zeros(2**18)}, checkpoint)
    # Size unknown: the disk fills during torch.save.
    with pytest.raises(DiskFullError, match=f"disk full: cannot write {checkpoint}: 0.0 MiB free .* on the filesystem"):
        with atomic_path(checkpoint) as tmp:
            torch.save({"w": torch.zeros(2**18)}, tmp)
    assert checkpoint.read_bytes() == finished, "the finished checkpoint is intact"
    assert [p.name for p in checkpoint.parent.iterdir()] == ["checkpoint.pt"], "no partial file is left"


@pytest.mark.workflow
def test_a_truncated_checkpoint_stops_the_run_before_its_evaluation_results_are_deleted(workdir):
    """The evaluations Snakemake reran on a truncated checkpoint deleted their old results before failing, and
    nothing told the user to delete the write-protected pretrain folder to retrain."""
    import torch

    from genview.errors import BadInputError
    from genview.evaluation.checkpoints import read_checkpoint
    from genview.io import write_digest
    from genview.training.train import _save

    folder = workdir / "results/pretrain/shapes_simclr_baseline"
    checkpoint = folder / "checkpoint.pt"
    _save({"format": 1, "backbone": {"w": torch.zeros(1000)}}, checkpoint)
    write_digest(checkpoint)
    result = workdir / "results/eval/shapes_simclr_baseline/cached/shapes.json"
    result.parent.mkdir(parents=True)
    result.write_text('{"knn": {"top1": 0.5}}')
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    run = snakemake(result, "--cores", "1", "--configfile", REPO / "config/smoke.yaml", workdir=workdir, check=False)
    assert run.returncode != 0
    assert "results/pretrain/shapes_simclr_baseline/checkpoint.pt: 1000 bytes where" in run.stderr + run.stdout
    assert "rm -rf results/pretrain/shapes_simclr_baseline" in run.stderr + run.stdout
    assert result.read_text() == '{"knn": {"top1": 0.5}}', "the old evaluation result is kept"
    with pytest.raises(BadInputError, match="truncated or damaged\\); its evaluation results are kept. To retrain"):
        read_checkpoint(checkpoint)
