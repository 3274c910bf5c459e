"""``genview config check FILE``: validate a config file as the Snakefile does and print it resolved."""

from __future__ import annotations

import sys

import yaml


def _check(args) -> None:
    from genview.config import load_config

    config = load_config(args.file)
    if args.print:
        yaml.safe_dump(config, sys.stdout, sort_keys=False)
    else:
        print(f"{args.file}: valid")


def register(stages) -> None:
    stage = stages.add_parser("config", help="validate configuration files")
    commands = stage.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a config file against config/schema.yaml")
    check.add_argument("file")
    check.add_argument("--print", action="store_true", help="print the config with defaults filled in")
    check.set_defaults(run=_check)
