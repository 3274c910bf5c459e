"""Every command the README and docs/ show runs as written: each `snakemake` command is dry-run in a copy of the
workflow (the paper config with placeholder dataset folders, so its file checks pass), each `genview` command line is
parsed by the real argument parser (and `config check` / `config estimate` run), each `make` command is dry-run."""

import re
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import REPO, VENV_BIN, copy_workflow, placeholder_datasets, raw_config, run_tool

from genview.cli import build_parser

pytestmark = pytest.mark.workflow

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_commands(path: Path) -> list[tuple[str, int, str]]:
    """(file, line, command) of every command in the shell code blocks of ``path``: continuation lines joined,
    comments and prompts dropped."""
    text = path.read_text()
    commands = []
    for block in SHELL_BLOCK.finditer(text):
        first_line = text[: block.start(1)].count("\n") + 1
        pending, start = "", None
        for offset, raw in enumerate(block[1].splitlines()):
            line = raw.removeprefix("$ ")
            if start is None:
                start = first_line + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = " ".join(shlex.split(pending + line, comments=True))
            if command:
                commands.append((path.relative_to(REPO).as_posix(), start, command))
            pending, start = "", None
    return commands


COMMANDS = [c for path in DOCS for c in shell_commands(path)]
SNAKEMAKE = [c for c in COMMANDS if c[2].split()[0] == "snakemake"]
GENVIEW = [c for c in COMMANDS if c[2].startswith(("python -m genview ", "genview "))]
MAKE = [c for c in COMMANDS if c[2].split()[0] == "make"]
# Files the docs' own commands write (`--out PATH`), e.g. measured rates that a later command reads: a measurement
# cannot run here, so a command reading one runs without it.
WRITTEN = {
    words[i + 1]
    for *_, command in COMMANDS
    for words in [shlex.split(command)]
    for i, word in enumerate(words[:-1])
    if word == "--out"
}


def test_the_docs_show_commands_of_each_kind():
    assert len(SNAKEMAKE) >= 5 and GENVIEW and MAKE, COMMANDS
    lines = shell_commands(REPO / "README.md")
    assert any(c == "make run" for _, _, c in lines) and any(c == "make test" for _, _, c in lines)


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """A copy of the workflow whose paper config points at placeholder dataset folders, each cut into two shards:
    the commands plan the same rules and experiments as with the paper's 256-512 shards, in seconds instead of the
    quarter-minute each dry run of 5,000 jobs takes (tests/test_workflow.py dry-runs the paper's own shards)."""
    base = tmp_path_factory.mktemp("docs")
    root = copy_workflow(base / "wf")
    config = placeholder_datasets(raw_config("paper.yaml"), base / "data")
    for spec in config["datasets"].values():
        spec["num_shards"] = 2
    (root / "config/paper.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "site.yaml").write_text(yaml.safe_dump({"datasets": {"imagenet1k": {"num_shards": 3}}}, sort_keys=False))
    return root


@pytest.mark.parametrize("where, line, command", SNAKEMAKE, ids=lambda v: str(v)[:70])
def test_snakemake_commands_dry_run(workflow, where, line, command):
    words = shlex.split(command)
    if "--report" in words:
        pytest.skip("--report renders a finished run (make run does it; tested end to end)")
    result = run_tool([VENV_BIN / "snakemake", "-n", *words[1:]], cwd=workflow, check=False, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{where}:{line}: `{command}` fails its dry run:\n{output[-3000:]}"


@pytest.mark.parametrize("where, line, command", GENVIEW, ids=lambda v: str(v)[:70])
def test_genview_commands_parse(workflow, where, line, command, monkeypatch):
    words = shlex.split(command)
    words = words[3:] if words[0] == "python" else words[1:]
    try:
        build_parser().parse_args(words)
    except SystemExit as error:
        pytest.fail(f"{where}:{line}: `{command}` is not a valid genview command line ({error})")
    if words[:2] in (["config", "check"], ["config", "estimate"]):
        words = [word for word in words if word not in WRITTEN]
        monkeypatch.chdir(workflow)
        result = run_tool([VENV_BIN / "python", "-m", "genview", *words], cwd=workflow, check=False)
        assert result.returncode == 0, f"{where}:{line}: `{command}`:\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("where, line, command", MAKE, ids=lambda v: str(v)[:70])
def test_make_commands_dry_run(where, line, command):
    result = run_tool(["make", "-n", *shlex.split(command)[1:]], cwd=REPO, check=False)
    assert result.returncode == 0, f"{where}:{line}: `{command}`:\n{result.stderr[-2000:]}"
