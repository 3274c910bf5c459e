"""``genview devices``: the GPUs a command gets, and any command run under a GPU lease like a workflow job's.

``python -m genview --gpus 2 devices run -- python my_script.py`` keeps ad-hoc work off the devices that the
workflow's jobs lease on the same machine (see :mod:`genview.runtime.gpu_lease`).
"""

from __future__ import annotations

import os

from genview.errors import GenviewError


def _show(args) -> None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    print(f"CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "CUDA_VISIBLE_DEVICES is not set (all GPUs)")


def _run(args) -> None:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise GenviewError("no command given (usage: genview --gpus N devices run -- COMMAND ...)")
    try:
        # exec, not a child: the lease's lock descriptors are inheritable, so the command itself holds the lease
        # and its exit status, signals and output are the job's.
        os.execvp(command[0], command)
    except OSError as error:
        raise GenviewError(f"cannot run {command[0]!r}: {error.strerror}") from None


def register(stages) -> None:
    import argparse

    stage = stages.add_parser("devices", help="GPU devices and leases (the global --gpus option)")
    commands = stage.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print CUDA_VISIBLE_DEVICES as this command sees it")
    show.set_defaults(run=_show)
    run = commands.add_parser("run", help="run COMMAND holding the lease (genview --gpus N devices run -- COMMAND)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    run.set_defaults(run=_run)
