"""Every script in benchmarks/ runs at its smallest size (its --smoke flag) and prints its figures: a benchmark that
nothing runs rots. Speed is never asserted, only that the figures are there."""

import os
import re
import subprocess
import sys

import pytest
from helpers import REPO

BENCHMARKS = REPO / "benchmarks"
NUMBER = r"[0-9]+(?:\.[0-9]+)?"
#: script -> a line of its figures (a regular expression), and whether its smoke run takes over ~5 s here (marked slow)
SMOKE = {
    "dag.py": (rf"^\s+0\s+[0-9]+\s+{NUMBER}\s+{NUMBER}$", True),
    "generation.py": (rf"ours / official: {NUMBER}x", True),
    "index_speed.py": (r"2 worker\(s\):\s+[0-9]+ images/s", False),
    "linear_probe.py": (rf"speed ratio linear / linear_fast: {NUMBER}x", True),
    "loader.py": (rf"^\s+simclr(\s+{NUMBER}){{4}}\s+{NUMBER}x\s+{NUMBER}x\s+{NUMBER}x$", True),
    "quality_overhead.py": (rf"overhead - inherent:\s+[+-]{NUMBER}", True),
    "rerun_triggers.py": (r"^\| `[^`]+` \| [0-9]+ \|", True),
}
#: scripts run by another test, at small sizes
ELSEWHERE = {"rates.py": "tests/test_rates_benchmark.py"}


def test_every_benchmark_has_a_smoke_run():
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    assert scripts == set(SMOKE) | set(ELSEWHERE), "add the new benchmark's --smoke run to SMOKE"
    assert all((REPO / test).is_file() for test in ELSEWHERE.values())


@pytest.mark.parametrize(
    "script", [pytest.param(name, marks=[pytest.mark.slow] if slow else []) for name, (_, slow) in SMOKE.items()]
)
def test_benchmark_smoke_run_prints_its_figures(script):
    result = subprocess.run(
        [sys.executable, BENCHMARKS / script, "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        # this checkout's package, whichever one the environment has installed
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert re.search(SMOKE[script][0], result.stdout, re.MULTILINE), result.stdout[-3000:]


def test_the_gpu_scripts_call_the_benchmarks_with_options_they_have():
    """The shell scripts (GPU machines only) are checked here as far as their syntax and the options they pass."""
    for script in BENCHMARKS.glob("*.sh"):
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script
        for name, options in re.findall(r"benchmarks/(\w+\.py)((?:[^\n|>]|\\\n)*)", script.read_text()):
            known = set(re.findall(r"add_argument\(\s*\"(--[a-z-]+)\"", (BENCHMARKS / name).read_text()))
            for option in re.findall(r"(--[a-z][a-z-]*)", options):
                assert option in known, f"{script.name}: {name} has no option {option}"
