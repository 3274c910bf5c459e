"""Table spec files (``config/tables.yaml``): schema-checked, expanded, and checked against what the config
evaluates, so a table can only name results the workflow produces. Light imports: the Snakefile uses this."""

from __future__ import annotations

import os
from pathlib import Path

from genview.config.load import load_schema, read_yaml, validate_config
from genview.errors import ConfigError
from genview.report.tables import cell_sources, expand_spec, validate_spec

TABLES_SCHEMA = Path(__file__).resolve().parents[2] / "config" / "tables.schema.yaml"


def load_table_specs(path: str | os.PathLike) -> dict[str, dict]:
    """Table name -> expanded spec; a ConfigError names the file, table, row and column of a problem."""
    specs = read_yaml(path, "report.tables: table spec file")
    validate_config(specs, load_schema(TABLES_SCHEMA), source=str(path))
    expanded = {}
    for name, spec in specs.items():
        try:
            expanded[name] = expand_spec(spec)
            validate_spec(expanded[name])
        except ConfigError as error:
            raise ConfigError(f"{path}: table {name}: {error}") from None
    return expanded


def check_sources(specs: dict[str, dict], evaluations, path: str | os.PathLike) -> None:
    """Every cell must be one of the config's (experiment, protocol, dataset) evaluations."""
    known = set(map(tuple, evaluations))
    problems = [
        f"table {name}: {experiment}/{protocol}/{dataset} is not evaluated by this config "
        "(add the experiment, or the dataset and protocol to evaluation.runs)"
        for name, spec in specs.items()
        for experiment, protocol, dataset in cell_sources(spec)
        if (experiment, protocol, dataset) not in known
    ]
    if problems:
        shown = "\n".join(f"  - {line}" for line in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ConfigError(
            f"{path}: {len(problems)} table cell(s) cannot be filled:\n{shown}{more}",
            [f"{path}: {problem}" for problem in problems],
        )
