"""Job logs: long loops show their progress (the training loops their loss), every command ends with a line, and
every rule sends both output streams to its log."""

import contextlib
import io
import json
import re

import pytest
from helpers import (
    evaluation_cached_args,
    evaluation_run_args,
    indexed_shapes,
    pretrain_run_args,
    shapes_spec,
    tiny_experiment,
)
from test_envs import JOB_RULES
from tqdm import tqdm

from genview.cli import main
from genview.config.load import validate_config

EVALUATION = validate_config({"evaluation": {"linear": {"epochs": 2, "batch_size": 8}}})["evaluation"]
SPEC = shapes_spec()


def job_log(*argv) -> list[str]:
    """The lines ``python -m genview ARGV`` writes to its job log: stdout and stderr, into a file (no terminal)."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        code = main([str(arg) for arg in argv])
    assert code == 0, log.getvalue()
    return log.getvalue().splitlines()


def progress_lines(lines: list[str], desc: str) -> list[str]:
    return [line for line in lines if f"genview.runtime.progress: {desc}: " in line]


def finished(lines: list[str], command: str) -> bool:
    return re.search(rf"INFO genview.cli: genview {command} finished in [0-9.]+ s$", lines[-1]) is not None


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    indexed_shapes(root, train_per_class=2)  # 24 train images
    return root


@pytest.fixture(scope="module")
def pretrained(shapes):
    """A 2-epoch SimCLR run through the command, and its log."""
    exp = tiny_experiment("simclr", epochs=2, batch_size=8)
    lines = job_log(
        *pretrain_run_args(exp, shapes / "e", shapes / "manifest.csv", "--device", "cpu", "--num-workers=0")
    )
    return shapes / "e", lines


def test_a_log_file_gets_one_whole_line_per_update(monkeypatch, caplog):
    from genview.runtime import progress

    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0)  # every update writes
    caplog.set_level("INFO", logger="genview.runtime.progress")
    with progress.progress(total=3, desc="loop", unit="step") as bar:
        for step in range(3):
            bar.set_postfix(loss=1 / (step + 1), refresh=False)
            bar.update()
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("loop:   0%") and "0/3" in lines[0]
    assert [f"{n}/3" in line for n, line in zip(range(1, 4), lines[1:])] == [True] * 3
    assert "loss=0.333" in lines[-1] and not any("\r" in line or "\n" in line for line in lines)


def test_pretraining_shows_the_loss_and_lr_of_its_steps_and_epochs(pretrained):
    folder, lines = pretrained
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["type"] == "step"]
    epochs = [r for r in records if r["type"] == "epoch"]
    bars = progress_lines(lines, "e")
    assert f"0/{len(steps)}" in bars[0] and f"{len(steps)}/{len(steps)}" in bars[-1]
    # The last progress line carries the last step's loss and lr, as tqdm formats numbers.
    assert f"epoch=2, loss={tqdm.format_num(steps[-1]['loss'])}, lr={tqdm.format_num(steps[-1]['lr'])}" in bars[-1]
    summaries = [line for line in lines if "genview.training.train: e epoch" in line]
    assert [
        f"epoch {i + 1}/2: mean loss {r['loss']:.4f}," in line for i, (r, line) in enumerate(zip(epochs, summaries))
    ] == [True, True]
    assert finished(lines, "pretrain run")


def test_evaluation_shows_feature_extraction_probe_steps_and_the_metrics(pretrained, tmp_path):
    folder, _ = pretrained
    protocols = {"knn": EVALUATION["knn"], "linear_fast": EVALUATION["linear_fast"]}
    cached = job_log(
        *evaluation_cached_args(
            folder / "checkpoint.pt",
            folder.parent / "manifest.csv",
            "shapes",
            "e",
            SPEC,
            tmp_path / "f.npz",
            tmp_path / "cached.json",
            "--num-workers",
            "0",
            "--device",
            "cpu",
            protocols=protocols,
        )
    )
    for split in ("train", "test"):
        assert "1/1 " in progress_lines(cached, f"features shapes {split}")[-1]  # one batch of 256
    sweep = len(EVALUATION["linear_fast"]["cs"]) + 1  # one fit per C, then the refit
    assert f"{sweep}/{sweep}" in progress_lines(cached, "linear_fast C sweep")[-1]
    knn = json.loads((tmp_path / "cached.json").read_text())["knn"]["metrics"]
    assert any(f"e knn on shapes: top1_k20 {knn['top1_k20']:.4g}," in line for line in cached)
    assert finished(cached, "evaluation cached")

    linear = job_log(
        *evaluation_run_args(
            "linear",
            "e",
            folder / "checkpoint.pt",
            "shapes",
            SPEC,
            tmp_path / "f.npz",
            EVALUATION["linear"],
            tmp_path / "linear.json",
            "--num-workers",
            "0",
            "--device",
            "cpu",
        )
    )
    steps = 2 * (24 // 8)
    assert f"{steps}/{steps}" in progress_lines(linear, "linear probe")[-1]
    assert "epoch=2, loss=" in progress_lines(linear, "linear probe")[-1]
    assert sum("linear probe epoch" in line for line in linear) == 2
    top1 = json.loads((tmp_path / "linear.json").read_text())["metrics"]["top1"]
    assert any(f"e linear on shapes: top1 {top1:.4g}," in line for line in linear)


def test_the_tiny_encoder_trainer_shows_its_loss(shapes):
    settings = {"steps": 3, "batch_size": 4, "width": 16, "layers": 1, "embed_dim": 8}
    lines = job_log(
        "models",
        "train-encoder",
        "--manifest",
        shapes / "manifest.csv",
        "--settings",
        json.dumps(settings),
        "--out-dir",
        shapes / "encoder",
    )
    assert "3/3" in progress_lines(lines, "tiny CLIP")[-1] and "loss=" in progress_lines(lines, "tiny CLIP")[-1]
    assert finished(lines, "models train-encoder")


def test_llm_caption_scoring_shows_progress_per_caption(shapes):
    from genview.models.chat_llm import build_tiny_chat_model

    shards = shapes / "shards"
    job_log("data", "shard", "--manifest", shapes / "manifest.csv", "--num-shards", 1, "--out-dir", shards)
    llm = {
        "path": str(build_tiny_chat_model(shapes / "llm")),
        "trust_remote_code": False,
        "max_new_tokens": 4,
        "do_sample": None,
    }
    analysis = validate_config({"analysis": {"complexity_scorer": "llm", "llm_attempts": 1}})["analysis"]
    lines = job_log(
        "analysis",
        "complexity",
        "--shard",
        shards / "0.csv",
        "--analysis",
        json.dumps(analysis),
        "--llm",
        json.dumps(llm),
        "--out",
        shapes / "cx.csv",
        "--device",
        "cpu",
    )
    assert "24/24" in progress_lines(lines, "LLM caption complexity")[-1]
    assert finished(lines, "analysis complexity")


def test_commands_that_wrote_nothing_now_say_what_they_did(shapes):
    spec = json.dumps({"kind": "shapes", "train_per_class": 1, "test_per_class": 1})
    made = job_log("data", "make-shapes", "--dataset", "toy", "--spec", spec, "--root", shapes / "toy")
    assert any("24 image(s) with masks and captions (train 12, test 12)" in line for line in made)
    assert finished(made, "data make-shapes")
    job_log("data", "shard", "--manifest", shapes / "manifest.csv", "--num-shards", 1, "--out-dir", shapes / "p")
    analysis = json.dumps(validate_config({})["analysis"])
    scored = job_log(
        "analysis", "complexity", "--shard", shapes / "p/0.csv", "--analysis", analysis, "--out", shapes / "c.csv"
    )
    assert any("complexity scores" in line and "'lexical'" in line for line in scored), scored
    assert finished(scored, "analysis complexity")


# unknown_report_target never runs: its input function stops the workflow with the list of real targets.
SHELL_JOBS = [rule for rule in JOB_RULES if "shell" in rule.directives and rule.name != "unknown_report_target"]


@pytest.mark.parametrize("rule", SHELL_JOBS, ids=str)
def test_every_job_sends_its_output_and_errors_to_its_log(rule):
    assert rule.literal("shell").endswith(" > {log:q} 2>&1"), f"{rule}: its shell should end with > {{log:q}} 2>&1"
