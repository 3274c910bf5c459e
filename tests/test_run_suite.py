"""`make test` runs the suite as two pytest sessions side by side (tests/run_suite.py): together they hold every
test of the suite, each once, and the end-to-end runs are in one session."""

import re
import subprocess
import sys

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow  # two collections of the whole suite


def test_the_two_sessions_of_make_test_hold_every_test_once(tmp_path):
    args = ["--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO), str(REPO / "tests")]
    # Run in tmp_path: the launcher writes the end-to-end session's log there.
    result = subprocess.run(
        [sys.executable, str(REPO / "tests/run_suite.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs_log = (tmp_path / ".pytest_cache/end_to_end_runs.log").read_text()
    others = result.stdout.partition(f"{'=' * 40} the end-to-end runs")[0]  # the log is printed after it
    sessions = {}
    for name, output in (("runs", runs_log), ("others", others)):
        selected, total = map(int, re.search(r"(\d+)/(\d+) tests collected", output).groups())
        ids = {line for line in output.splitlines() if "::" in line}
        assert len(ids) == selected, name
        sessions[name] = (ids, total)
    (runs, total), (rest, total_again) = sessions["runs"], sessions["others"]
    assert total == total_again > 600
    assert not runs & rest and len(runs) + len(rest) == total  # each test once: none in both, none in neither
    assert any(i.startswith("tests/test_smoke_run.py::") for i in runs)
    assert any(i.startswith("tests/test_slurm.py::") for i in rest)
