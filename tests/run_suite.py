"""`make test`: the whole suite as two pytest sessions side by side.

Most of the suite's time goes to a few end-to-end runs of the workflow (``RUNS``), which run one after the other
in one session. They leave a core idle much of the time (one-thread jobs, Snakemake's own work between jobs),
while every other test, the SLURM runs among them, needs about one core and often waits. Those run in a second
session at the lowest CPU priority (``nice -n 19``), so they take the cycles the end-to-end runs leave idle rather
than cycles the runs would use: two sessions at the same priority slowed the runs down twice over on 2 cores, as a
two-thread torch job waits for its second thread when another process holds that core.

The second session prints as it goes; the end-to-end session writes to ``RUNS_LOG``, printed when both have
ended. The exit status is the first failing session's. Arguments are passed to both sessions (e.g. ``-x``)."""

import subprocess
import sys
from pathlib import Path

RUNS = "workflow and slow and not slurm"
RUNS_LOG = Path(".pytest_cache/end_to_end_runs.log")


def pytest(marker_expression: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", marker_expression, *args]


def main(args: list[str]) -> int:
    RUNS_LOG.parent.mkdir(exist_ok=True)
    print(f"run_suite: the end-to-end runs ({RUNS}) run beside this session; their log: {RUNS_LOG}", flush=True)
    with open(RUNS_LOG, "w") as log:
        # Ctrl-C reaches both sessions (one process group), and each stops its own runs.
        runs = subprocess.Popen(pytest(RUNS, *args), stdout=log, stderr=subprocess.STDOUT)
        try:
            others = subprocess.call(["nice", "-n", "19", *pytest(f"not ({RUNS})", *args)])
            print(f"run_suite: waiting for the end-to-end runs (log: {RUNS_LOG})", flush=True)
        finally:
            runs.wait()
            print(f"\n{'=' * 40} the end-to-end runs ({RUNS_LOG}) {'=' * 40}", flush=True)
            print(RUNS_LOG.read_text(errors="replace"), flush=True)
    return others or runs.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
