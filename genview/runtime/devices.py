"""Which torch device a command runs on, and the errors a GPU job can meet that a user should read as one line.

A job that was given GPUs (``CUDA_VISIBLE_DEVICES`` names devices: a ``--gpus N`` lease, or the scheduler's
assignment under SLURM) runs on them or fails: when torch cannot use them (a CPU-only torch build, a torch built for
a newer CUDA than the node's driver, a broken driver), ``auto`` is an error that says what torch reports, not a
silent run on the CPU that would take a hundred times longer. ``GENVIEW_DEVICE=cpu`` runs such a job on the CPU on
purpose (e.g. a cluster whose GPUs are not real, in tests).
"""

from __future__ import annotations

import contextlib
import os

from genview.errors import GenviewError

DEVICE_VARIABLE = "GENVIEW_DEVICE"
_HIDDEN = {"-1", "NoDevFiles"}  # values that hide every device


def given_gpus(environ=os.environ) -> list[str]:
    """The devices this process was given through ``CUDA_VISIBLE_DEVICES`` ([] when unset or hiding all)."""
    ids = [part.strip() for part in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    return [] if not ids or ids[0] in _HIDDEN else ids


def torch_cuda_report() -> str:
    """What torch says about CUDA here: its build, the devices it sees, and why it cannot initialise CUDA."""
    import torch

    try:
        torch.cuda.init()
        reason = "no error from torch.cuda.init()"
    except Exception as error:  # the driver's or the build's own words
        reason = str(error).strip().splitlines()[0]
    return (
        f"torch {torch.__version__} (built for CUDA {torch.version.cuda or 'none: a CPU-only build'}) reports "
        f"torch.cuda.is_available() False and {torch.cuda.device_count()} device(s): {reason}"
    )


def unusable_gpu_error(given: list[str], environ=os.environ) -> GenviewError:
    scheduler = f", set by SLURM job {environ['SLURM_JOB_ID']}" if environ.get("SLURM_JOB_ID") else ""
    return GenviewError(
        f"this job was given GPU(s) (CUDA_VISIBLE_DEVICES={','.join(given)}{scheduler}) but torch cannot use them: "
        f"{torch_cuda_report()}. Install a torch build that matches the node's driver (nvidia-smi shows the CUDA "
        f"version the driver supports), or set {DEVICE_VARIABLE}=cpu to run on the CPU on purpose"
    )


def resolve_device(name: str = "auto", environ=os.environ) -> str:
    """``auto`` is ``GENVIEW_DEVICE`` when set, else the first visible CUDA device; the CPU only for a job that was
    given no GPU (a job given GPUs that torch cannot use is an error, see the module docstring)."""
    import torch

    if name == "auto" and environ.get(DEVICE_VARIABLE, "").strip():
        name = environ[DEVICE_VARIABLE].strip()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        given = given_gpus(environ)
        if given:
            raise unusable_gpu_error(given, environ)
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenviewError(f"device {name!r} requested but CUDA is not available here: {torch_cuda_report()}")
    return name


def device_memory(device) -> str:
    """The device and its memory as the out-of-memory message shows them."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"{device} (memory unknown)"
    free, total = torch.cuda.mem_get_info(device)
    peak = torch.cuda.max_memory_allocated(device)
    gib = 2**30
    return (
        f"{torch.cuda.get_device_name(device)} ({device}): {total / gib:.1f} GiB, {free / gib:.1f} GiB free, "
        f"{peak / gib:.1f} GiB at this job's peak"
    )


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    # Allocation failures inside cuBLAS/cuDNN or NCCL arrive as plain RuntimeErrors saying so.
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


@contextlib.contextmanager
def out_of_memory_advice(command: str, *, batch_size: int, lower: str, device):
    """Turn a GPU out-of-memory error in the block into a GenviewError naming ``command``, the batch size, the
    device memory and what to lower (``lower``)."""
    try:
        yield
    except RuntimeError as error:
        if not _is_out_of_memory(error):
            raise
        raise GenviewError(
            f"{command}: out of GPU memory at batch size {batch_size} on {device_memory(device)}; lower {lower}"
            f" ({str(error).strip().splitlines()[0][:200]})"
        ) from error
