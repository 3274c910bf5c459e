"""``genview analysis fit-foreground | foreground | complexity``."""

from __future__ import annotations

from genview.cli_args import json_argument
from genview.errors import ConfigError

#: The analysis settings each command reads (rules/analysis.smk passes these and no others: a job's params are what
#: its output depends on).
FIT_FOREGROUND_KEYS = ("fg_sample_per_class", "fg_sample_size", "fg_bins", "fg_cdf", "fg_sign",
                       "fg_flipped_threshold", "batch_size")  # fmt: skip
FOREGROUND_KEYS = ("noise_edges", "noise_levels", "batch_size")
COMPLEXITY_KEYS = ("complexity_scorer", "guidance_for_score")
COMPLEXITY_LLM_KEYS = ("llm_attempts",)  # read by the llm scorer only


def _memory_advice(command: str, analysis: dict, device: str):
    from genview.runtime.devices import out_of_memory_advice

    return out_of_memory_advice(command, batch_size=analysis["batch_size"], lower="analysis.batch_size", device=device)


def _fit_foreground(args) -> None:
    from genview.analysis.foreground import fit_foreground
    from genview.runtime.devices import resolve_device

    analysis = json_argument(args.analysis, "--analysis")
    device = resolve_device(args.device)
    with _memory_advice("analyze fit-foreground (rule fit_foreground)", analysis, device):
        fit_foreground(
            args.manifest,
            json_argument(args.encoder, "--encoder"),
            args.out,
            args.overlay,
            per_class=analysis["fg_sample_per_class"],
            sample_size=analysis["fg_sample_size"],
            bins=analysis["fg_bins"],
            cdf=analysis["fg_cdf"],
            sign=analysis["fg_sign"],
            flipped_threshold=analysis["fg_flipped_threshold"],
            batch_size=analysis["batch_size"],
            seed=args.seed,
            device=device,
        )


def _foreground(args) -> None:
    from genview.analysis.foreground import foreground_shard
    from genview.runtime.devices import resolve_device

    analysis = json_argument(args.analysis, "--analysis")
    device = resolve_device(args.device)
    with _memory_advice("analyze foreground (rule foreground_shard)", analysis, device):
        foreground_shard(
            args.shard,
            args.fit,
            json_argument(args.encoder, "--encoder"),
            args.out,
            noise_edges=analysis["noise_edges"],
            noise_levels=analysis["noise_levels"],
            batch_size=analysis["batch_size"],
            device=device,
        )


def _complexity(args) -> None:
    from genview.analysis.params import complexity_shard

    analysis = json_argument(args.analysis, "--analysis")
    generate, attempts = None, 1
    if analysis["complexity_scorer"] == "llm":
        if not args.llm:
            raise ConfigError("analyze complexity: the llm scorer needs --llm (models.complexity_llm as JSON)")
        attempts = analysis["llm_attempts"]
        from genview.models.chat_llm import load_chat_model
        from genview.runtime.devices import resolve_device

        spec = json_argument(args.llm, "--llm")
        generate = load_chat_model(
            spec["path"],
            trust_remote_code=spec["trust_remote_code"],
            device=resolve_device(args.device),
            max_new_tokens=spec["max_new_tokens"],
            do_sample=spec["do_sample"],
            seed=args.seed,
        ).generate
    complexity_shard(
        args.shard,
        args.out,
        guidance_for_score=analysis["guidance_for_score"],
        generate=generate,
        attempts=attempts,
    )


def register(stages) -> None:
    stage = stages.add_parser("analysis", help="foreground ratio and caption complexity per image")
    commands = stage.add_subparsers(dest="command", required=True)

    def command(name, run, help_text, *required):
        parser = commands.add_parser(name, help=help_text)
        for option in required:
            parser.add_argument(option, required=True)
        parser.set_defaults(run=run)
        return parser

    fit = command(
        "fit-foreground",
        _fit_foreground,
        "fit PC-1 and the threshold on a sample of a manifest",
        "--manifest",
        "--encoder",
        "--analysis",
        "--out",
        "--overlay",
    )
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", default="auto")
    foreground = command(
        "foreground",
        _foreground,
        "foreground ratio and noise level for every image of a shard",
        "--shard",
        "--fit",
        "--encoder",
        "--analysis",
        "--out",
    )
    foreground.add_argument("--device", default="auto")
    complexity = command(
        "complexity",
        _complexity,
        "caption complexity and guidance for every row of a shard",
        "--shard",
        "--analysis",
        "--out",
    )
    complexity.add_argument("--llm", help="models.complexity_llm as JSON (scorer llm)")
    complexity.add_argument("--device", default="auto")
    complexity.add_argument("--seed", type=int, default=0, help="seeds the LLM's sampled answers")
