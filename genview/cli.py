"""Command line: ``python -m genview <stage> <command> ...`` (also ``genview ...``).

Each stage module registers its commands; heavy imports happen inside the commands, so ``--help`` is quick.
``--gpus N`` leases N of the machine's GPUs before the command runs (see :mod:`genview.runtime.gpu_lease`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from genview.errors import GenviewError
from genview.runtime.gpu_lease import lease_gpus
from genview.runtime.processes import end_with_snakemake

STAGES = (
    "genview.config.cli",
    "genview.runtime.devices_cli",
    "genview.data.cli",
    "genview.models.cli",
    "genview.rehearsal.cli",
    "genview.analysis.cli",
    "genview.quality.cli",
    "genview.generation.cli",
    "genview.training.cli",
    "genview.evaluation.cli",
    "genview.report.cli",
)


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = argparse.ArgumentParser(prog="genview", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="lease N GPUs of this machine and set CUDA_VISIBLE_DEVICES to them (0: hide the GPUs);"
        " no-op on a machine without GPUs or when CUDA_VISIBLE_DEVICES is already set",
    )
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for module in STAGES:
        import_module(module).register(stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    started = time.perf_counter()
    end_with_snakemake()
    try:
        if args.gpus is not None:  # before the command imports torch, which reads CUDA_VISIBLE_DEVICES once
            lease_gpus(args.gpus)
        args.run(args)
    except GenviewError as error:
        print(f"genview {args.stage}: error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except BrokenPipeError:  # the reader of our output left (`genview config check --print ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    # Every command's last line: no job log is empty, and a log without it is of a job that did not finish.
    logging.getLogger(__name__).info(
        "genview %s %s finished in %.1f s", args.stage, args.command, time.perf_counter() - started
    )
    return 0
