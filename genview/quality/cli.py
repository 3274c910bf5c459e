"""``genview quality fit-vector``: the quality encoder's PC-1 vector, which the GenView weights project on."""

from __future__ import annotations

from genview.cli_args import json_argument

#: The analysis settings fit-vector reads (rules/quality.smk passes these and no others).
FIT_QUALITY_KEYS = ("fg_sample_per_class", "fg_sample_size", "fg_sign", "batch_size")


def _fit_vector(args) -> None:
    from genview.quality.encoder import fit_quality_vector
    from genview.runtime.devices import out_of_memory_advice, resolve_device

    analysis, encoder = json_argument(args.analysis, "--analysis"), json_argument(args.encoder, "--encoder")
    device = resolve_device(args.device)
    with out_of_memory_advice(
        "quality fit-vector (rule fit_quality_vector)",
        batch_size=analysis["batch_size"],
        lower="analysis.batch_size",
        device=device,
    ):
        fit_quality_vector(
            args.manifest,
            encoder,
            args.out,
            per_class=analysis["fg_sample_per_class"],
            sample_size=analysis["fg_sample_size"],
            seed=args.seed,
            batch_size=analysis["batch_size"],
            sign=analysis["fg_sign"],
            image_size=encoder.get("image_size"),
            device=device,
        )


def register(stages) -> None:
    stage = stages.add_parser("quality", help="the quality encoder's PC-1 vector (GenView weights)")
    commands = stage.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit-vector", help="fit PC-1 of the quality encoder's tokens on a sample of a manifest")
    fit.add_argument("--manifest", required=True, help="the dataset's manifest.csv")
    fit.add_argument("--encoder", required=True, help="models.quality_encoder as JSON")
    fit.add_argument(
        "--analysis", required=True, help="the analysis settings as JSON (the fitting sample, batch_size, fg_sign)"
    )
    fit.add_argument("--out", required=True, help="the vector's npz")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="auto")
    fit.set_defaults(run=_fit_vector)
