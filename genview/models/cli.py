"""``genview models build-tiny | train-encoder | fetch``."""

from __future__ import annotations


def _build_tiny(args) -> None:
    from genview.models.tiny import build_tiny_models

    build_tiny_models(args.out_dir, image_size=args.image_size)


def _train_encoder(args) -> None:
    from genview.cli_args import json_argument
    from genview.models.tiny_clip import train_tiny_open_clip

    settings = {k: v for k, v in json_argument(args.settings, "--settings").items() if k != "dataset"}
    train_tiny_open_clip(args.out_dir, args.manifest, **settings)


def _fetch(args) -> None:
    from genview.config.load import load_config_files
    from genview.models.fetch import fetch_models

    fetch_models(load_config_files(args.config), cache=args.cache, roles=args.roles)


def register(stages) -> None:
    from genview.models.fetch import ROLES

    stage = stages.add_parser("models", help="pretrained models by role")
    commands = stage.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("build-tiny", help="write tiny random-weight stand-ins for every role (offline)")
    tiny.add_argument("--out-dir", default="results/models/tiny")
    tiny.add_argument("--image-size", type=int, default=32, help="native image size of the tiny diffusion pipelines")
    tiny.set_defaults(run=_build_tiny)
    train = commands.add_parser("train-encoder", help="train the tiny open_clip encoder (models.trained_encoder)")
    train.add_argument("--manifest", required=True, help="the dataset's manifest.csv")
    train.add_argument("--settings", required=True, help="models.trained_encoder as JSON")
    train.add_argument("--out-dir", required=True)
    train.set_defaults(run=_train_encoder)
    fetch = commands.add_parser(
        "fetch",
        help="download the hub models a config names (on a machine with internet, e.g. a login node)",
        description="Download every hub model of the config(s) into the cache that jobs with models.offline: true "
        "read (docs/cluster.md). Several files are merged in order, like snakemake --configfile A B.",
    )
    fetch.add_argument("config", nargs="+", help="the run's config file(s)")
    fetch.add_argument(
        "--cache",
        help="cache root (default: the config's models.cache_dir, else the libraries' "
        "default caches); give the jobs the same folder as models.cache_dir",
    )
    fetch.add_argument(
        "--roles", nargs="+", choices=ROLES, metavar="ROLE", help=f"only these roles ({', '.join(ROLES)})"
    )
    fetch.set_defaults(run=_fetch)
