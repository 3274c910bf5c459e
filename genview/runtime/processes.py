"""The processes of a run: one writer per output folder, jobs that end with their Snakemake, and which Snakemake
processes work in a folder (``make run`` removes a Snakemake lock only when none does).

Linux only (``/proc``); elsewhere the watchdog and the search for live Snakemake processes find nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from genview.errors import GenviewError

LOG = logging.getLogger(__name__)
LOCK_FILE = ".writer.lock"


class OutputBusyError(GenviewError):
    """Another live process writes the same outputs."""

    exit_code = 75  # EX_TEMPFAIL: try again once the other writer has ended


def _process(pid: int) -> tuple[list[str], int, str] | None:
    """(command line, parent pid, start time) of a live process, or None when it is gone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ... starttime is field 22
    if fields[0] == "Z":  # a zombie has ended; only its parent has not collected it yet
        return None
    return [arg.decode(errors="replace") for arg in cmdline if arg], int(fields[1]), fields[19]


def _describe(pid: int) -> str:
    found = _process(pid)
    return f"pid {pid}: {' '.join(found[0])[:200]}" if found else f"pid {pid}"


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``folder``'s writer lock (an exclusive ``flock`` on ``folder/.writer.lock``) while the block runs.

    The lock is held by this process, not by Snakemake: it is released when the process ends in any way (even
    SIGKILL), and a second job that would write the same outputs (after ``snakemake --unlock`` while the first still
    runs, or from a second Snakemake) refuses to start instead of interleaving its writes. The descriptor stays open
    across ``os.exec*``, so torchrun, which replaces the process, keeps holding the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            holder = _describe(int(owner)) if owner.isdigit() else "another process"
            raise OutputBusyError(
                f"{what}: {folder} is being written by {holder}. Two writers would mix their outputs: wait for it to "
                f"end, or end it (kill {owner or 'PID'}) if it is left over from a killed run, then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        os.set_inheritable(handle.fileno(), True)  # an exec (torchrun) keeps holding it
        yield


def is_snakemake(cmdline: list[str]) -> bool:
    """A Snakemake process: ``snakemake ...``, ``python .../snakemake ...`` or ``python -m snakemake ...``."""
    head = [Path(arg).name for arg in cmdline[:3]]
    return "snakemake" in head[:2] or head[1:3] == ["-m", "snakemake"]


def launching_snakemake(max_depth: int = 6) -> tuple[int, str] | None:
    """(pid, start time) of the nearest Snakemake among this process's ancestors (a shell or torchrun may stand in
    between), or None when no Snakemake started it."""
    pid = os.getppid()
    for _ in range(max_depth):
        found = _process(pid) if pid > 1 else None
        if found is None:
            return None
        cmdline, parent, started = found
        if is_snakemake(cmdline):
            return pid, started
        pid = parent
    return None


def end_with_snakemake(poll_seconds: float = 1.0) -> None:
    """When Snakemake started this process, end it (SIGTERM, which a training answers by saving its resume point)
    once that Snakemake has gone: a Snakemake killed with SIGKILL cannot end its jobs, and an orphaned job would go
    on writing outputs that the next run writes too. A daemon thread polls the Snakemake process."""
    launcher = launching_snakemake()
    if launcher is None:
        return
    pid, started = launcher

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll_seconds):
            found = _process(pid)
            if found is None or found[2] != started:  # gone, or the pid reused by another process
                print(
                    f"genview: the Snakemake that started this job (pid {pid}) has ended; stopping the job",
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="end-with-snakemake", daemon=True).start()


def live_snakemake(folder: str | os.PathLike) -> list[int]:
    """Pids of the live Snakemake processes working in ``folder`` (their current directory), this one excluded."""
    folder = os.path.realpath(folder)
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.path.realpath(entry / "cwd") != folder:
                continue
            found = _process(pid)
            if found and is_snakemake(found[0]):
                pids.append(pid)
    return sorted(pids)


def main(argv: list[str] | None = None) -> int:
    """``python -m genview.runtime.processes live-snakemake [FOLDER]``: exit 0 when no Snakemake works in FOLDER
    (default: the current one), else name them and exit 1 (``make run`` then leaves their lock alone and stops)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m genview.runtime.processes")
    commands = parser.add_subparsers(dest="command", required=True)
    live = commands.add_parser("live-snakemake", help="exit 1 when a Snakemake process works in FOLDER")
    live.add_argument("folder", nargs="?", default=".")
    args = parser.parse_args(argv)
    pids = live_snakemake(args.folder)
    if pids:
        running = "; ".join(_describe(pid) for pid in pids)
        print(
            f"Snakemake already runs in {os.path.realpath(args.folder)} ({running}): its lock is live. Wait for it to "
            "end or stop it, then run again",
            file=sys.stderr,
        )
    return 1 if pids else 0


if __name__ == "__main__":
    sys.exit(main())
