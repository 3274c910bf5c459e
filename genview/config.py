"""Configuration: load YAML, fill the schema's defaults, validate, report errors by key path.

Used by the Snakefile before any job runs and by the command line, so both see the same resolved config.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from genview.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


@functools.cache
def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The parsed schema, read once per process (the Snakefile checks every evaluation's settings against it).
    Shared: callers read it and never modify it."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ConfigError(f"schema: only local $ref are supported, got {ref!r}")
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        # Keywords beside the $ref (description, default) refine the referenced schema.
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(instance: Any, schema: dict, root: dict | None = None) -> None:
    """Insert ``default`` values of ``schema`` into ``instance`` in place, recursively.

    Follows ``properties``, ``additionalProperties`` (maps of named entries), array ``items``, plain ``allOf``
    branches, and the ``then`` branch of every ``allOf`` ``if``/``then`` whose ``if`` matches, so per-kind defaults
    apply only to that kind.
    """
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return
    schema = _resolve(schema, root)
    if isinstance(instance, list):
        items = schema.get("items")
        for item in instance if isinstance(items, dict) else []:
            fill_defaults(item, items, root)
        return
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if not isinstance(sub, dict):
            continue
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                fill_defaults(value, extra, root)
    for branch in schema.get("allOf", []):
        condition = branch.get("if")
        if condition is None:
            fill_defaults(instance, branch, root)
        elif "then" in branch:
            if Draft202012Validator({"$defs": root.get("$defs", {}), **condition}).is_valid(instance):
                fill_defaults(instance, branch["then"], root)



def _key_path(parts) -> str:
    return ".".join(str(part) for part in parts) or "<top level>"


def _declared_properties(schema: dict, root: dict) -> set[str]:
    """The property names a schema declares, through $ref and allOf (what unevaluatedProperties lets through)."""
    schema = _resolve(schema, root)
    names = set(schema.get("properties", {}))
    for branch in schema.get("allOf", []):
        names |= _declared_properties(branch, root)
    return names


def _describe(error, root: dict) -> list[str]:
    path = list(error.absolute_path)
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        allowed = sorted(_declared_properties(error.schema, root))
        unknown = sorted(set(error.instance) - set(allowed))
        return [f"{_key_path(path + [key])}: unknown key (allowed here: {', '.join(allowed)})" for key in unknown]
    return [f"{_key_path(path)}: {error.message}"]


def validate_config(config: dict, schema: dict | None = None, source: str = "config") -> dict:
    """Fill defaults into ``config`` in place and validate it; raise :class:`ConfigError` naming each bad key."""
    schema = load_schema() if schema is None else schema
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(config).__name__}")
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        fill_defaults(config, schema)
        errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        problems = [line for error in errors for line in _describe(error, schema)]
        lines = "\n".join(f"  - {line}" for line in problems)
        raise ConfigError(f"{source} is invalid ({len(problems)} problem(s)):\n{lines}")
    return config


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content ({} when empty); a missing or malformed file is a ConfigError naming it."""
    try:
        with open(path) as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def load_config(path: str | Path) -> dict:
    """Read and validate one complete config file."""
    return validate_config(read_yaml(path), source=str(path))


DEFAULT_CONFIG = SCHEMA_PATH.parent / "config.yaml"


def merge_config(base: dict, update: dict) -> dict:
    """``update`` merged into ``base`` in place as Snakemake merges config files: mappings key by key, anything
    else (lists included) replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def workflow_config(files: list[str | Path], default: str | Path = DEFAULT_CONFIG) -> dict:
    """The config the Snakefile sees with ``--configfile FILES``: the files merged in order into the embedded
    default, unless they declare themselves complete (``standalone: true``), in which case they alone."""
    given = {}
    for path in files:
        merge_config(given, read_yaml(path))
    if given.get("standalone"):
        return given
    return merge_config(read_yaml(default), given)


def load_config_files(paths: list[str | Path]) -> dict:
    """The validated config of ``snakemake --configfile A B ...`` (see :func:`workflow_config`)."""
    return validate_config(workflow_config(paths), source=" + ".join(map(str, paths)))


def dataset_generation(config: dict, dataset: str) -> dict:
    """The generation settings of ``dataset``: the global ones with the dataset's overrides (per source, and the
    save size and quality)."""
    settings = copy.deepcopy(config["generation"])
    for key, override in config["datasets"][dataset].get("generation", {}).items():
        if isinstance(override, dict):
            settings[key].update(override)
        else:
            settings[key] = override
    return settings
