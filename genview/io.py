"""Atomic file output: every file the workflow writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from genview.errors import GenviewError

#: Free space below which a failed write is taken for a full disk (torch.save reports one as a RuntimeError).
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(GenviewError):
    """No space left where an output is written."""


def _disk_full(path: Path, free: int, needed: int | None = None) -> DiskFullError:
    usage = shutil.disk_usage(path.parent)
    wanted = f" ({needed / 2**20:.1f} MiB needed)" if needed is not None else ""
    return DiskFullError(
        f"disk full: cannot write {path}{wanted}: {free / 2**20:.1f} MiB free of {usage.total / 2**30:.1f} GiB on the "
        f"filesystem of {path.parent.resolve()}. Free space there (or move results/ to a larger disk) and run again: "
        "nothing was left half-written, and finished outputs are kept"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, expected_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic on POSIX. A write that
    fails on a full disk is reported as :class:`DiskFullError` naming the file and the filesystem; with
    ``expected_bytes`` (a checkpoint's tensors) the free space is checked before anything is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if expected_bytes is not None and shutil.disk_usage(path.parent).free < expected_bytes:
        raise _disk_full(path, shutil.disk_usage(path.parent).free, expected_bytes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as error:
        free = shutil.disk_usage(path.parent).free  # measured before the partial file is removed
        if getattr(error, "errno", None) == errno.ENOSPC or free < NEARLY_FULL_BYTES:
            raise _disk_full(path, free) from error
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open`` for writing, through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.digest.json")


def write_digest(path: str | os.PathLike) -> None:
    """Record ``path``'s size and SHA-256 beside it (``<path>.digest.json``), for :func:`digest_problem`."""
    import json

    with atomic_open(digest_path(path)) as handle:
        json.dump({"bytes": os.path.getsize(path), "sha256": file_sha256(path)}, handle)


def digest_problem(path: str | os.PathLike, full: bool = False) -> str | None:
    """What differs between ``path`` and the size (and, with ``full``, the SHA-256) recorded when it was written;
    None when it matches or nothing was recorded."""
    import json

    try:
        recorded = json.loads(digest_path(path).read_text())
    except FileNotFoundError:
        return None
    if not os.path.exists(path):
        return "missing"
    size = os.path.getsize(path)
    if size != recorded["bytes"]:
        return f"{size} bytes where {recorded['bytes']} were written (truncated or damaged)"
    if full and file_sha256(path) != recorded["sha256"]:
        return "its content differs from what was written (SHA-256)"
    return None


def settings_stamp(settings: dict) -> str:
    """A short hash of everything that determines a cached output (its "stamp"): equal stamps, equal outputs."""
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike, sample_bytes: int = 1 << 16) -> str:
    """A cheap fingerprint of a large file: its size and its first and last ``sample_bytes``."""
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    digest.update(f"{size}\0".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(sample_bytes))
        if size > sample_bytes:
            handle.seek(max(sample_bytes, size - sample_bytes))
            digest.update(handle.read(sample_bytes))
    return digest.hexdigest()[:16]


def folder_fingerprint(folder: str | os.PathLike) -> str:
    """A fingerprint of the files under ``folder`` (a local model): each file's relative path and
    :func:`file_fingerprint`. Cheap on multi-GB weights and changed by any rebuild, re-download or edit short of one
    that keeps every size and both ends of every file."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_fingerprint(path)}\0".encode())
    return digest.hexdigest()[:16]
