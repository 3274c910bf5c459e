"""Which (experiment, protocol, dataset) evaluations the config asks for. Import-light: read at Snakefile parse time."""

from __future__ import annotations

import fnmatch

from genview.errors import ConfigError

#: Protocol names are the keys of the config's evaluation section that hold a protocol's settings.
NOT_PROTOCOLS = ("batch_size", "num_workers", "runs")


def protocol_names(config: dict) -> list[str]:
    return sorted(key for key in config["evaluation"] if key not in NOT_PROTOCOLS)


def resolve_evaluations(config: dict, experiments: list[str]) -> list[tuple[str, str, str]]:
    """Sorted (experiment, protocol, dataset) triples; a pattern matching nothing or an unknown name is an error."""
    datasets = set(config["datasets"]) | set(config["eval_datasets"])
    protocols = protocol_names(config)
    triples = set()
    for i, run in enumerate(config["evaluation"]["runs"]):
        where = f"evaluation.runs[{i}]"
        for protocol in run["protocols"]:
            if protocol not in protocols:
                raise ConfigError(f"{where}.protocols: unknown protocol {protocol!r} (known: {', '.join(protocols)})")
        for dataset in run["datasets"]:
            if dataset not in datasets:
                raise ConfigError(f"{where}.datasets: {dataset!r} is not a key of datasets or eval_datasets")
        for pattern in run["experiments"]:
            matched = fnmatch.filter(experiments, pattern)
            if not matched:
                raise ConfigError(f"{where}.experiments: {pattern!r} matches no pre-training experiment")
            triples.update((e, p, d) for e in matched for p in run["protocols"] for d in run["datasets"])
    return sorted(triples)
