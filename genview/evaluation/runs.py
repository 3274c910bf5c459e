"""Which (experiment, protocol, dataset) evaluations the config asks for, each with its protocol settings.

Import-light: read at Snakefile parse time.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping

from jsonschema import Draft202012Validator

from genview.config.load import load_schema
from genview.errors import ConfigError
from genview.method_catalog import METHOD_CATALOG
from genview.vocabulary import CACHED_PROTOCOLS, PROTOCOLS, TEXT_PROTOCOLS


def result_file(experiment: str, protocol: str, dataset: str, root: str = "results/eval") -> str:
    """Where an evaluation's result lives: ``<root>/<experiment>/<protocol>/<dataset>.json``, or for the protocols
    on cached features their shared ``<root>/<experiment>/cached/<dataset>.json`` (keyed by protocol)."""
    if protocol in CACHED_PROTOCOLS:
        return f"{root}/{experiment}/cached/{dataset}.json"
    return f"{root}/{experiment}/{protocol}/{dataset}.json"


def read_result(experiment: str, protocol: str, dataset: str, root: str = "results/eval") -> dict | None:
    """An evaluation's record (metrics, settings, provenance), or None when it does not exist yet."""
    import json
    from pathlib import Path

    path = Path(result_file(experiment, protocol, dataset, root))
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    return payload.get(protocol) if protocol in CACHED_PROTOCOLS else payload


def protocol_names(config: dict) -> list[str]:
    return sorted(key for key in config["evaluation"] if key in PROTOCOLS)


def _settings_problems(settings: dict, protocol: str, where: str) -> list[str]:
    schema = load_schema()
    validator = Draft202012Validator(
        {**schema["properties"]["evaluation"]["properties"][protocol], "$defs": schema["$defs"]}
    )
    return [
        f"{'.'.join([where, *map(str, error.absolute_path)])}: {error.message}"
        for error in validator.iter_errors(settings)
    ]


def resolve_evaluations(config: dict, experiments: Mapping[str, dict]) -> dict[tuple[str, str, str], dict]:
    """(experiment, protocol, dataset) -> the protocol's settings (``evaluation.<protocol>`` with the run's
    ``settings.<protocol>`` on top), sorted by key. Every problem is reported at once, naming its config key: a
    pattern matching nothing, an unknown protocol or dataset, a text protocol on a two-view experiment, a setting
    the protocol does not have, and one evaluation given different settings by two runs."""
    datasets = set(config["datasets"]) | set(config["eval_datasets"])
    protocols = protocol_names(config)
    catalog = METHOD_CATALOG
    names = sorted(experiments)
    resolved: dict[tuple[str, str, str], dict] = {}
    origin: dict[tuple[str, str, str], str] = {}
    problems = []
    for i, run in enumerate(config["evaluation"]["runs"]):
        where = f"evaluation.runs[{i}]"
        problems += [
            f"{where}.protocols: unknown protocol {p!r} (known: {', '.join(protocols)})"
            for p in run["protocols"]
            if p not in protocols
        ]
        problems += [
            f"{where}.datasets: {d!r} is not a key of datasets or eval_datasets"
            for d in run["datasets"]
            if d not in datasets
        ]
        for protocol, override in run["settings"].items():
            if protocol not in run["protocols"]:
                problems.append(f"{where}.settings.{protocol}: not one of this run's protocols {run['protocols']}")
            elif protocol in protocols:
                problems += _settings_problems(
                    {**config["evaluation"][protocol], **override}, protocol, f"{where}.settings.{protocol}"
                )
        for pattern in run["experiments"]:
            matched = fnmatch.filter(names, pattern)
            if not matched:
                problems.append(f"{where}.experiments: {pattern!r} matches no pre-training experiment")
            for experiment in matched:
                method = experiments[experiment]["method"]
                for protocol in (p for p in run["protocols"] if p in protocols):
                    if protocol in TEXT_PROTOCOLS and method in catalog and catalog[method].kind != "vision_language":
                        problems.append(
                            f"{where}: {protocol} needs a text tower, but {experiment!r} ({method}) "
                            f"has none (match vision-language experiments only)"
                        )
                        continue
                    settings = {**copy.deepcopy(config["evaluation"][protocol]), **run["settings"].get(protocol, {})}
                    for dataset in (d for d in run["datasets"] if d in datasets):
                        key = (experiment, protocol, dataset)
                        if key in resolved and resolved[key] != settings:
                            problems.append(
                                f"{where}: {'/'.join(key)} is also asked for by {origin[key]} with other settings"
                            )
                        resolved.setdefault(key, settings)
                        origin.setdefault(key, where)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ConfigError(
            f"{len(unique)} problem(s) with the evaluations:\n" + "\n".join(f"  - {problem}" for problem in unique),
            unique,
        )
    return dict(sorted(resolved.items()))
