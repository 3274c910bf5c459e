"""``genview pretrain run``: one experiment, in one process or under torchrun with ``--nproc N``."""

from __future__ import annotations

import os
import sys

from genview.cli_args import json_argument
from genview.training.experiments import RECIPE_EXECUTION_KEYS


def _run(args) -> None:
    from genview.runtime.processes import output_lock

    if "LOCAL_RANK" in os.environ:  # a torchrun worker: its launcher holds the lock
        _train(args)
        return
    # One writer per experiment folder: a second trainer (left over from a killed run) would append to the same
    # metrics and overwrite the same resume point.
    with output_lock(args.out_dir, "pretrain run"):
        _train(args)


def _train(args) -> None:
    from genview.runtime.devices import out_of_memory_advice, resolve_device

    device = resolve_device(args.device)  # before torchrun too: a GPU that torch cannot use fails here, once
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        # Re-launch this same command under torchrun, one process per GPU (gloo processes on a CPU-only machine).
        # exec keeps the GPU lease (genview --gpus) in torchrun, and its workers inherit CUDA_VISIBLE_DEVICES, so
        # LOCAL_RANK indexes the leased devices.
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.nproc}",
            "-m",
            "genview",
            "pretrain",
            "run",
            "--experiment",
            args.experiment,
            "--out-dir",
            args.out_dir,
            "--manifest",
            args.manifest,
            "--device",
            args.device,
            "--views",
            *(args.views or []),
        ]
        command += [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in RECIPE_EXECUTION_KEYS]
        if args.quality_vector:
            command += ["--quality-vector", args.quality_vector]
        os.execv(sys.executable, command)
    from genview.training.train import ignore_stop_signals, train

    _check_views(args.views or [])
    experiment = json_argument(args.experiment, "--experiment")
    batch_size, world = experiment["recipe"]["batch_size"], int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's
    per_gpu = f"{batch_size // world} per process of {batch_size}" if world > 1 else str(batch_size)
    with out_of_memory_advice(
        f"pretrain run {experiment['name']} (rule pretrain)",
        batch_size=per_gpu,
        device=device,
        lower=f"the recipe's batch_size (the learning rate scales with it) or spread it over more GPUs (the "
        f"experiment's gpus: {experiment['gpus']}); amp bf16 also saves memory "
        f"(recipe amp: {experiment['recipe']['amp']})",
    ):
        train(
            experiment,
            args.out_dir,
            manifest=args.manifest,
            view_manifests=args.views or [],
            quality_vector=args.quality_vector,
            device=device,
            execution={key: getattr(args, key) for key in RECIPE_EXECUTION_KEYS},
        )
    ignore_stop_signals()  # from here to the process's end: SLURM's warning may come just after the last step


def _check_views(manifests: list[str]) -> None:
    """Every view the training will draw exists with the size its generation wrote (a stat per view): a truncated
    or deleted view is named here, with the repair, instead of failing mid-training without a file name."""
    from genview.contracts import VIEWS
    from genview.errors import BadInputError
    from genview.generation.views import damaged_views, repair_advice

    damaged = [item for manifest in manifests for item in damaged_views(VIEWS.read(manifest, need=("view",)))]
    if damaged:
        raise BadInputError(repair_advice(damaged))


def register(stages) -> None:
    stage = stages.add_parser("pretrain", help="pre-training")
    commands = stage.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train one experiment (resumes from its resume.pt)")
    run.add_argument("--experiment", required=True, help="the resolved experiment as JSON")
    run.add_argument("--out-dir", required=True)
    run.add_argument("--manifest", required=True, help="the dataset's manifest.csv")
    run.add_argument("--views", nargs="*", help="view manifests of the generation stage")
    run.add_argument("--quality-vector", help="PC-1 of the quality encoder (genview variant)")
    run.add_argument("--device", default="auto")
    run.add_argument("--nproc", type=int, default=1, help="processes (GPUs); >1 launches torchrun")
    # Execution settings (the recipe's num_workers, save_every_epochs, save_every_steps, max_nonfinite_in_row): the
    # workflow passes them from the rule's resources, so changing them reruns nothing and a resume continues.
    from genview.config.load import load_schema

    recipe = load_schema()["$defs"]["recipe"]["properties"]
    for key in RECIPE_EXECUTION_KEYS:
        run.add_argument(
            f"--{key.replace('_', '-')}",
            type=int,
            default=recipe[key]["default"],
            help=recipe[key].get("description", f"recipe {key}"),
        )
    run.set_defaults(run=_run)
