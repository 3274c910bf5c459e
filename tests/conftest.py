"""The tests' fixtures; every other shared helper is in tests/helpers.py."""

import os
import subprocess

import pytest
from helpers import (
    KILL_AFTER_JOBS,
    MAKE_RUN,
    REPO,
    VENV_BIN,
    copy_workflow,
    finished_jobs,
    job_counts,
    run_tool,
    tool_env,
)


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


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
    with open(first_log, "w") as log:
        process = subprocess.Popen(
            MAKE_RUN, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=tool_env(), start_new_session=True
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
