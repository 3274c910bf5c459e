"""``genview generation views``: one (dataset, source, shard) job."""

from __future__ import annotations

from genview.cli_args import json_argument
from genview.vocabulary import SOURCES


def _views(args) -> None:
    from genview.analysis.params import read_params
    from genview.generation.views import generate_shard
    from genview.models import model_identity
    from genview.models.diffusion import load_pipeline
    from genview.runtime.devices import out_of_memory_advice, resolve_device
    from genview.runtime.processes import output_lock
    from genview.vocabulary import SOURCE_ROLES

    generation, model = json_argument(args.generation, "--generation"), json_argument(args.model, "--model")
    device = resolve_device(args.device)
    role = SOURCE_ROLES[args.source]
    with (
        output_lock(args.views_dir, "generation views"),
        out_of_memory_advice(
            "generation views (rule generate_views)",
            batch_size=generation["batch_size"],
            lower="generation.batch_size (images per pipeline call; a change regenerates the "
            "views, since batched CUDA kernels may change pixels)",
            device=device,
        ),
    ):
        generate_shard(
            source=args.source,
            shard_csv=args.shard,
            pipeline=load_pipeline(role, model, device),  # first: a missing model is the error to report
            params=read_params(args.shard, foreground_csv=args.foreground, complexity_csv=args.complexity),
            views_dir=args.views_dir,
            out_manifest=args.out,
            generation=generation,
            seed=args.seed,
            on_bad_image=args.on_bad_image,
            model=model_identity(model, role),
        )


def _collect(args) -> None:
    from genview.generation.views import collect_manifests

    collect_manifests(args.manifests, args.out)


def _verify(args) -> None:
    from pathlib import Path

    from genview.contracts import VIEWS
    from genview.errors import BadInputError
    from genview.generation.views import damaged_views, repair_advice, shard_manifest_of

    damaged = [item for manifest in args.manifests for item in damaged_views(VIEWS.read(manifest), digests=True)]
    if not damaged:
        print(f"{len(args.manifests)} view manifest(s): every view is whole")
        return
    if not args.repair:
        raise BadInputError(repair_advice(damaged))
    shards = sorted({shard_manifest_of(view) for view, _ in damaged})
    for view, problem in damaged:
        print(f"deleting {view}: {problem}")
        Path(view).unlink(missing_ok=True)
    for shard in shards:  # its generation job is then scheduled again (and reuses the shard's whole views)
        print(f"deleting {shard}")
        shard.unlink(missing_ok=True)
    print(f"run the same snakemake command again: it regenerates the {len(damaged)} view(s) of {len(shards)} shard(s)")


def register(stages) -> None:
    stage = stages.add_parser("generation", help="view generation")
    commands = stage.add_subparsers(dest="command", required=True)
    views = commands.add_parser("views", help="generate the views of one shard for one source (resumable)")
    views.add_argument("--source", required=True, choices=SOURCES)
    views.add_argument("--shard", required=True, help="shard CSV (id, path, caption, ...)")
    views.add_argument("--foreground", help="the shard's foreground ratios (needed when the noise level is adaptive)")
    views.add_argument("--complexity", help="the shard's caption complexity (needed when the guidance is adaptive)")
    views.add_argument("--views-dir", required=True, help="folder for the view JPEGs")
    views.add_argument("--out", required=True, help="view manifest CSV, written last")
    views.add_argument(
        "--generation",
        required=True,
        help="the source's generation settings as JSON (steps, samples, save_size, jpeg_quality, "
        "batch_size and the source's own section)",
    )
    views.add_argument("--model", required=True, help="the pipeline's models.<role> entry as JSON")
    views.add_argument("--seed", type=int, default=0)
    views.add_argument("--on-bad-image", choices=["skip", "error"], default="skip")
    views.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    views.set_defaults(run=_views)
    verify = commands.add_parser(
        "verify",
        help="check every view of view manifests against the size and SHA-256 its generation recorded; "
        "--repair deletes the damaged views and their shard manifests, so a rerun regenerates exactly those",
    )
    verify.add_argument("manifests", nargs="+", metavar="MANIFEST", help="view manifests (per shard or collected)")
    verify.add_argument("--repair", action="store_true")
    verify.set_defaults(run=_verify)
    collect = commands.add_parser("collect", help="one view manifest of a (dataset, source) from its shards'")
    collect.add_argument("--out", required=True)
    collect.add_argument("manifests", nargs="+", help="shard view manifests, in shard order")
    collect.set_defaults(run=_collect)
