"""GPU leases on one machine: concurrent jobs that each ask for k GPUs get disjoint device ids.

Snakemake's ``--resources gpu=N`` only caps how many GPUs the running jobs ask for in total; it does not say which
devices a job may use. A job takes a lease before torch is imported: an exclusive ``flock`` on one lock file per
device id, then ``CUDA_VISIBLE_DEVICES`` set to the leased ids (so ``cuda:0`` and torchrun's ``LOCAL_RANK`` index
into them). The locks belong to the open file descriptors, so the OS releases them when the process ends, however
it ends: a crashed or killed job never leaks a device. The descriptors are inheritable so that a process that
``exec``s (torchrun for a multi-GPU run, ``genview devices run``) keeps the lease; children it starts get the
variable, not the locks (``subprocess`` closes descriptors by default).

Environment:
- ``GENVIEW_GPUS``: the devices jobs may lease, a count (``4`` = ids 0..3) or a comma list of ids (``2,3``; one
  id: ``5,``). Default: the GPUs ``nvidia-smi -L`` lists, none without it.
- ``CUDA_VISIBLE_DEVICES``: when already set (a scheduler such as SLURM assigned devices), no lease is taken.
  Otherwise a job that asks for 0 GPUs gets it set to "" (no devices), so it cannot use one leased to another job.
- ``GENVIEW_GPU_LEASE_DIR``: the lock files' folder (default: a per-user folder in the system temp folder, which
  is local to the machine, unlike a working directory on a shared file system, where flock may not work and where
  another node's jobs would take ids of a different machine).
- ``GENVIEW_GPU_LEASE_TIMEOUT``: seconds to wait for free devices (default 3600).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from genview.errors import GenviewError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3600.0
POLL_S = 0.5


def parse_inventory(text: str) -> list[int]:
    """``GENVIEW_GPUS``: a count, or device ids separated by commas (a trailing comma marks a single id)."""
    text = text.strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 0:
                raise ValueError
            return list(range(count))
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise GenviewError(f"GENVIEW_GPUS={text!r}: expected a GPU count (4) or device ids (0,1,3)") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise GenviewError(f"GENVIEW_GPUS={text!r}: device ids must be distinct and non-negative")
    return ids


def gpu_inventory(environ=os.environ) -> list[int]:
    """The device ids of this machine that jobs may lease."""
    if environ.get("GENVIEW_GPUS", "").strip():
        return parse_inventory(environ["GENVIEW_GPUS"])
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        log.warning("nvidia-smi -L did not answer in 60 s; assuming no GPUs")
        return []
    if listing.returncode != 0:  # a driver problem: torch will not see the devices either
        log.warning(
            "nvidia-smi -L exited %d (%s): no GPUs to lease here, so --gpus is ignored",
            listing.returncode,
            (listing.stderr or listing.stdout).strip()[:300],
        )
        return []
    return list(range(sum(line.startswith("GPU ") for line in listing.stdout.splitlines())))


def lease_dir(environ=os.environ) -> Path:
    if environ.get("GENVIEW_GPU_LEASE_DIR"):
        return Path(environ["GENVIEW_GPU_LEASE_DIR"])
    return Path(tempfile.gettempdir()) / f"genview-gpu-leases-{os.getuid()}"


def _lock_file(directory: Path, device: int) -> int:
    path = directory / f"gpu{device}.lock"
    try:
        # No symlinks: the file is truncated, and a shared temp folder could hold a link to someone's file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        raise GenviewError(
            f"cannot open the GPU lock file {path}: {error.strerror} "
            f"(set GENVIEW_GPU_LEASE_DIR to a folder of your own)"
        ) from None
    os.set_inheritable(fd, True)
    return fd


def _try_lock(directory: Path, device: int) -> int | None:
    """A descriptor holding ``device``'s lock, or None when another process holds it."""
    fd = _lock_file(directory, device)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for the wait message of whoever comes next
    return fd


def _holders(directory: Path, devices: list[int]) -> str:
    return ", ".join(f"GPU {d} by pid {(directory / f'gpu{d}.lock').read_text().strip() or '?'}" for d in devices)


def acquire(count: int, inventory: list[int], directory: Path, timeout_s: float) -> list[int]:
    """Lock ``count`` free ids of ``inventory``, waiting up to ``timeout_s``; the locks are held until the process
    ends. All-or-nothing per attempt, so two jobs waiting for two GPUs each never hold one each forever."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    deadline = time.monotonic() + timeout_s
    waiting = False
    while True:
        held: dict[int, int] = {}
        for device in inventory:
            fd = _try_lock(directory, device)
            if fd is not None:
                held[device] = fd
                if len(held) == count:
                    return list(held)
        for fd in held.values():
            os.close(fd)
        busy = [d for d in inventory if d not in held]
        if time.monotonic() >= deadline:
            raise GenviewError(
                f"no {count} free GPU(s) of {len(inventory)} after {timeout_s:g} s (held: {_holders(directory, busy)};"
                f" lock files in {directory}); raise GENVIEW_GPU_LEASE_TIMEOUT, or make --resources gpu=N match"
                f" the machine's GPUs"
            )
        if not waiting:
            log.info("waiting for %d free GPU(s) (held: %s)", count, _holders(directory, busy))
            waiting = True
        time.sleep(POLL_S)


def lease_gpus(count: int, environ=os.environ) -> str | None:
    """Lease ``count`` GPUs for this process and set ``CUDA_VISIBLE_DEVICES`` to them; returns the value set, or
    None when the devices are left as they are: a scheduler already chose them, or the machine has none (a CPU run
    is unchanged). ``count`` 0 hides the GPUs, so a job that declared none cannot use a device leased to another."""
    if count < 0:
        raise GenviewError(f"--gpus {count}: must be 0 or more")
    if "CUDA_VISIBLE_DEVICES" in environ:
        log.debug("CUDA_VISIBLE_DEVICES=%s already set: no GPU lease taken", environ["CUDA_VISIBLE_DEVICES"])
        return None
    inventory = gpu_inventory(environ)
    if not inventory:
        return None
    if count == 0:
        environ["CUDA_VISIBLE_DEVICES"] = ""
        return ""
    if count > len(inventory):
        raise GenviewError(
            f"--gpus {count}: this machine has {len(inventory)} GPU(s) to lease"
            f" ({','.join(map(str, inventory))}; GENVIEW_GPUS restricts or simulates the inventory)"
        )
    try:
        timeout_s = float(environ.get("GENVIEW_GPU_LEASE_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        value = environ["GENVIEW_GPU_LEASE_TIMEOUT"]
        raise GenviewError(f"GENVIEW_GPU_LEASE_TIMEOUT={value!r}: expected seconds") from None
    devices = acquire(count, inventory, lease_dir(environ), timeout_s)
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    log.info("leased GPU(s) %s", environ["CUDA_VISIBLE_DEVICES"])
    return environ["CUDA_VISIBLE_DEVICES"]
