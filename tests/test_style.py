"""Formatting and lint are part of the test command: ruff (lint and format, settings in pyproject.toml) on the
package, tests and benchmarks, and snakefmt on the Snakefile and rules. Fix with `ruff check --fix`, `ruff format`
and `snakefmt Snakefile rules`."""

import pytest
from helpers import VENV_BIN, run_tool

PYTHON_TREES = ("genview", "tests", "benchmarks")


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", *PYTHON_TREES],
        ["ruff", "format", "--check", *PYTHON_TREES],
        ["snakefmt", "--check", "Snakefile", "rules"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_style(command):
    result = run_tool([VENV_BIN / command[0], *command[1:]], check=False)
    assert result.returncode == 0, f"`{' '.join(command)}` fails:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
