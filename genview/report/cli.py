"""``genview report table | claims | tsne | gallery | quality | train-pixel-judge | checks | cost``: tables and
figures from the workflow's result files."""

from __future__ import annotations

from pathlib import Path

from genview.cli_args import json_argument


def _table(args) -> None:
    from genview.report.specs import load_table_specs
    from genview.report.tables import render_table

    specs = load_table_specs(args.tables)
    if args.name not in specs:
        from genview.errors import ConfigError

        raise ConfigError(f"{args.tables} has no table {args.name!r} (tables: {', '.join(sorted(specs))})")
    paths = render_table(specs[args.name], args.results, Path(args.out_dir) / args.name)
    print(paths["md"].read_text(), end="")


def _claims(args) -> None:
    from genview.report.claims import write_claims
    from genview.report.specs import load_table_specs

    write_claims(load_table_specs(args.tables), args.results, args.out_prefix, args.half_width)
    print(Path(f"{args.out_prefix}.md").read_text(), end="")


def _tsne(args) -> None:
    from genview.errors import ConfigError
    from genview.report.tsne import tsne_figure

    panels = []
    for panel in args.panel:
        label, separator, npz = panel.partition("=")
        if not separator:
            raise ConfigError(f"--panel {panel!r}: expected LABEL=FEATURES.npz")
        panels.append((label, npz))
    tsne_figure(
        panels,
        args.out,
        args.points,
        splits=args.splits,
        classes=args.classes,
        per_class=args.per_class,
        seed=args.seed,
        perplexity=args.perplexity,
        title=args.title,
    )


def _gallery(args) -> None:
    from genview.analysis.foreground import foreground_masks, load_fit
    from genview.errors import ConfigError
    from genview.models.diffusion import load_pipeline
    from genview.report.gallery import gallery_rows, image_gallery, spread_rows, text_gallery
    from genview.runtime.devices import resolve_device

    if not (args.out_ic or args.out_tc):
        raise ConfigError("report gallery: give --out-ic (with --fit), --out-tc, or both")
    if args.out_ic and not args.fit:
        raise ConfigError("report gallery: --out-ic needs --fit (the foreground fit, for the masks)")
    device = resolve_device(args.device)
    generation = json_argument(args.generation, "--generation")
    rows = gallery_rows(args.shard, foreground_csv=args.foreground, complexity_csv=args.complexity)
    if args.out_ic:
        chosen = spread_rows(rows, "fg_ratio", args.images)
        _, masks = foreground_masks(
            chosen["path"].tolist(),
            load_fit(args.fit),
            json_argument(args.fg_encoder, "--fg-encoder"),
            device=device,
            fit_name=args.fit,
        )
        image_gallery(
            chosen,
            masks,
            load_pipeline("unclip", json_argument(args.unclip, "--unclip"), device),
            noise_levels=args.noise_levels,
            guidance_scale=generation["ic"]["guidance_scale"],
            steps=generation["steps"],
            seed=args.seed,
            out_png=args.out_ic,
            title="IC views across noise levels (framed: the adaptive level)",
        )
    if args.out_tc:
        captioned = rows[rows["caption"] != ""]
        extremes = spread_rows(captioned, "complexity", 2)  # the simplest and the most detailed caption
        text_gallery(
            extremes,
            load_pipeline("text2img", json_argument(args.text2img, "--text2img"), device),
            guidance_scales=args.guidance_scales,
            steps=generation["steps"],
            seed=args.seed,
            out_png=args.out_tc,
            title="TC views across guidance scales (framed: the adaptive scale)",
        )


def _quality(args) -> None:
    from genview.quality.encoder import QualityScorer
    from genview.report.quality_audit import quality_audit
    from genview.runtime.devices import resolve_device

    encoder = json_argument(args.encoder, "--encoder")
    scorer = QualityScorer(
        encoder,
        args.vector,
        device=resolve_device(args.device),
        normalization=args.normalization,
        image_size=encoder.get("image_size"),
    )
    quality_audit(
        args.views,
        args.manifest,
        scorer,
        args.out,
        args.scores,
        sample=args.sample,
        extremes=args.extremes,
        seed=args.seed,
    )


def _train_pixel_judge(args) -> None:
    from genview.report.checks import train_judge
    from genview.report.pixel_judge import save_pixel_judge

    judge = train_judge(args.manifest, epochs=args.epochs, seed=args.seed)
    save_pixel_judge(judge, args.out)
    print(f"pixel judge: {judge.test_accuracy} on the real test split (the lower of PNG and JPEG 75)")


def _checks(args) -> None:
    from genview.report import checks
    from genview.report.pixel_judge import load_pixel_judge
    from genview.report.specs import load_table_specs

    about = (
        "The embedded default's models were trained for minutes on the synthetic shapes set, not the paper's: "
        "these numbers test that each mechanism of the method does what the paper says, against the ground "
        "truth the shapes generator knows; they are not the paper's results."
    )
    result: dict = {"about": about}
    fg_encoder = json_argument(args.fg_encoder, "--fg-encoder")
    if args.foreground:
        result["foreground"] = checks.foreground_checks(
            args.foreground,
            args.manifest,
            json_argument(args.noise_edges, "--noise-edges"),
            json_argument(args.noise_levels, "--noise-levels"),
        )
        result["foreground"]["fit_sample_iou"] = _encoder_ious(args, fg_encoder)
    judge = load_pixel_judge(args.pixel_judge)
    result["judge"] = {"test_accuracy": judge.test_accuracy, "epochs": judge.settings["epochs"]}
    views = checks.judged_views(args.views, args.manifest, judge)
    result["views"] = checks.view_checks(views, args.complexity)
    result["quality"] = _checks_quality(args, views)
    if args.training_metrics:
        result["training_weights"] = checks.training_weight_checks(args.training_metrics)
    if args.learning_table:
        spec = load_table_specs(args.tables)[args.learning_table]
        result["learning"] = checks.learning_checks(
            spec, args.results, json_argument(args.learning_columns, "--learning-columns")
        )
    if args.zeroshot_table:
        spec = load_table_specs(args.tables)[args.zeroshot_table]
        result["zeroshot"] = checks.zeroshot_checks(spec, args.results, "baseline", 100 / len(judge.classes))
    result["goals"] = checks.default_goals(result)
    checks.write_checks(result, args.out_json, args.out_md)


def _encoder_ious(args, fg_encoder: dict) -> dict:
    """IoU of the foreground fit on the fitting sample: the analysis's encoder, the same architecture trained
    without masks or labels, and at random initialisation."""
    import numpy as np

    from genview.report import checks

    options = {"per_class": args.per_class, "sample_size": args.sample_size, "seed": args.seed}
    with np.load(args.fit) as fit:
        ious = {"analysis_encoder": round(float(fit["mean_iou"]), 4)} if "mean_iou" in fit.files else {}
    if args.unsupervised_encoder:
        spec = {"model": f"local-dir:{args.unsupervised_encoder}"}
        ious["trained_without_masks_or_labels"] = round(checks.encoder_fit_iou(spec, args.manifest, **options), 4)
    ious["random_initialisation"] = round(checks.random_encoder_iou(fg_encoder, args.manifest, **options), 4)
    return ious


def _checks_quality(args, views) -> dict:
    from genview.quality.encoder import QualityScorer
    from genview.report import checks
    from genview.runtime.devices import resolve_device

    encoder = json_argument(args.quality_encoder, "--quality-encoder")
    scorer = QualityScorer(
        encoder, args.vector, device=resolve_device(args.device), image_size=encoder.get("image_size")
    )
    pairs = checks.score_pairs_with_truth(args.views, views, args.manifest, scorer, args.sample, args.seed)
    return checks.quality_auc(pairs)


def _cost(args) -> None:
    from genview.report.cost import write_cost

    write_cost(args.benchmarks, json_argument(args.rule_gpus, "--rule-gpus"), args.stages, args.out_prefix)
    print(Path(f"{args.out_prefix}.md").read_text(), end="")


def register(stages) -> None:
    stage = stages.add_parser("report", help="tables and figures from result files")
    commands = stage.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_table_command,
        _add_claims_command,
        _add_tsne_command,
        _add_gallery_command,
        _add_quality_command,
        _add_train_pixel_judge_command,
        _add_checks_command,
        _add_cost_command,
    ):
        add_command(commands)


def _add_table_command(commands) -> None:
    table = commands.add_parser("table", help="render one table of the spec file (Markdown, LaTeX, CSV)")
    table.add_argument("name", help="table name in the spec file")
    table.add_argument("--tables", default="config/tables.yaml", help="table spec file")
    table.add_argument("--results", default="results/eval", help="folder of <experiment>/<protocol>/<dataset>.json")
    table.add_argument("--out-dir", default="results/tables")
    table.set_defaults(run=_table)


def _add_claims_command(commands) -> None:
    claims = commands.add_parser(
        "claims", help="every claimed direction of the seeded tables: difference, interval, verdict"
    )
    claims.add_argument("--tables", default="config/tables.yaml", help="table spec file")
    claims.add_argument("--results", default="results/eval", help="folder of <experiment>/<protocol>/<dataset>.json")
    claims.add_argument("--half-width", type=float, default=2.0, help="interval half-width to count seeds for")
    claims.add_argument("--out-prefix", default="results/tables/claims", help="writes <prefix>.md and .html")
    claims.set_defaults(run=_claims)


def _add_tsne_command(commands) -> None:
    tsne = commands.add_parser("tsne", help="t-SNE panels of cached features (same classes and images in each)")
    tsne.add_argument("--panel", action="append", required=True, help="LABEL=FEATURES.npz, once per panel")
    tsne.add_argument("--splits", nargs="+", default=["test"])
    tsne.add_argument("--classes", type=int, default=9)
    tsne.add_argument("--per-class", type=int, default=100)
    tsne.add_argument("--perplexity", type=float, default=30.0)
    tsne.add_argument("--seed", type=int, default=0)
    tsne.add_argument("--title")
    tsne.add_argument("--out", required=True, help="PNG")
    tsne.add_argument("--points", required=True, help="CSV of the 2-d points")
    tsne.set_defaults(run=_tsne)


def _add_gallery_command(commands) -> None:
    gallery = commands.add_parser("gallery", help="IC views across noise levels, TC views across guidance scales")
    for option in ("--shard", "--fg-encoder", "--unclip", "--generation"):
        gallery.add_argument(option, required=True)
    gallery.add_argument("--foreground", help="the shard's foreground ratios (with --out-ic)")
    gallery.add_argument("--complexity", help="the shard's caption complexity (with --out-tc)")
    gallery.add_argument("--fit", help="the dataset's foreground fit (npz; with --out-ic)")
    gallery.add_argument("--out-ic", help="PNG of the IC gallery (needs an adaptive noise level)")
    gallery.add_argument("--text2img", help="models.text2img as JSON (with --out-tc)")
    gallery.add_argument("--out-tc", help="PNG of the TC gallery (needs an adaptive guidance scale)")
    gallery.add_argument("--images", type=int, default=3)
    gallery.add_argument("--noise-levels", type=int, nargs="+", default=[0, 100, 200, 300, 400])
    gallery.add_argument("--guidance-scales", type=float, nargs="+", default=[2, 4, 6, 8])
    gallery.add_argument("--seed", type=int, default=0)
    gallery.add_argument("--device", default="auto")
    gallery.set_defaults(run=_gallery)


def _add_quality_command(commands) -> None:
    quality = commands.add_parser("quality", help="quality scores of (real, generated) pairs per source")
    quality.add_argument("--manifest", required=True)
    quality.add_argument("--views", nargs="+", required=True, help="view manifests")
    quality.add_argument("--encoder", required=True, help="models.quality_encoder as JSON")
    quality.add_argument("--vector", required=True, help="quality PC-1 fit (npz)")
    quality.add_argument("--normalization", choices=["clip", "imagenet"], default="clip")
    quality.add_argument("--sample", type=int, default=256, help="pairs per source")
    quality.add_argument("--extremes", type=int, default=3, help="highest and lowest pairs shown")
    quality.add_argument("--seed", type=int, default=0)
    quality.add_argument("--device", default="auto")
    quality.add_argument("--out", required=True, help="PNG")
    quality.add_argument("--scores", required=True, help="CSV of every scored pair")
    quality.set_defaults(run=_quality)


def _add_train_pixel_judge_command(commands) -> None:
    judge = commands.add_parser(
        "train-pixel-judge", help="the checks' pixel judge: a conv net trained with the real training split's labels"
    )
    judge.add_argument("--manifest", required=True, help="a shapes dataset's manifest (train and test splits)")
    judge.add_argument("--epochs", type=int, default=30)
    judge.add_argument("--seed", type=int, default=0)
    judge.add_argument("--out", required=True, help="the judge (a torch file)")
    judge.set_defaults(run=_train_pixel_judge)


def _add_checks_command(commands) -> None:
    check = commands.add_parser("checks", help="checks against the ground truth of a shapes dataset")
    for option in ("--manifest", "--fit", "--fg-encoder", "--quality-encoder", "--vector", "--out-json", "--out-md"):
        check.add_argument(option, required=True)
    check.add_argument("--pixel-judge", required=True, help="the judge `report train-pixel-judge` wrote")
    check.add_argument("--views", nargs="+", required=True, help="view manifests of every source")
    check.add_argument("--foreground", nargs="+", default=[], help="the shards' foreground ratios")
    check.add_argument("--noise-edges", default="[0.2, 0.4, 0.6, 0.8]", help="JSON: analysis.noise_edges")
    check.add_argument("--noise-levels", default="[0, 100, 200, 300, 400]", help="JSON: analysis.noise_levels")
    check.add_argument("--unsupervised-encoder", help="folder of the encoder trained without masks or labels")
    check.add_argument(
        "--training-metrics", nargs="*", default=[], help="metrics.jsonl of trainings with quality weights"
    )
    check.add_argument("--complexity", nargs="+", default=[], help="the shards' caption complexity")
    check.add_argument("--tables", default="config/tables_default.yaml")
    check.add_argument("--learning-table", help="a seeded table with random / baseline / views / genview columns")
    check.add_argument(
        "--learning-columns",
        default="{}",
        help="JSON: role (random, baseline, views, genview) -> column key of the learning table",
    )
    check.add_argument("--zeroshot-table", help="a seeded zero-shot table whose baseline column is checked")
    check.add_argument("--results", default="results/eval")
    check.add_argument("--sample", type=int, default=512, help="(real, view) pairs per source scored")
    check.add_argument("--per-class", type=int, default=10, help="foreground fitting sample (as analysis)")
    check.add_argument("--sample-size", type=int, default=10000)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--device", default="auto")
    check.set_defaults(run=_checks)


def _add_cost_command(commands) -> None:
    cost = commands.add_parser("cost", help="wall time and GPU-hours per stage from the benchmark files")
    cost.add_argument("--benchmarks", default="results/benchmarks")
    cost.add_argument("--rule-gpus", default="{}", help="JSON: rule -> GPUs, or rule -> {experiment|protocol: GPUs}")
    cost.add_argument("--stages", nargs="*", default=[], help="stage order of the table")
    cost.add_argument("--out-prefix", default="results/tables/cost")
    cost.set_defaults(run=_cost)
