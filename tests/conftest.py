import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


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
