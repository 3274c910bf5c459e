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

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


@functools.cache
def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The parsed schema, read once per process (the Snakefile checks every evaluation's settings against it).
    Shared: callers read it and never modify it."""
    with open(path) as handle:
        return yaml.safe_load(handle)


def resolve_ref(schema: dict, root: dict) -> dict:
    """``schema`` with its local ``$ref`` followed (``#/$defs/...``), the keywords beside it (description, default)
    refining the referenced schema; the config checks and the generated configuration page both read it."""
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
    schema = resolve_ref(schema, root)
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
        sub = resolve_ref(sub, root)
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
        elif "then" in branch and Draft202012Validator({"$defs": root.get("$defs", {}), **condition}).is_valid(
            instance
        ):
            fill_defaults(instance, branch["then"], root)


def _key_path(parts) -> str:
    return ".".join(str(part) for part in parts) or "<top level>"


def _declared_properties(schema: dict, root: dict) -> set[str]:
    """The property names a schema declares, through $ref and allOf (what unevaluatedProperties lets through)."""
    schema = resolve_ref(schema, root)
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
    """Read and validate a config file, as the Snakefile does (a ``derive`` section is applied first)."""
    return validate_config(derive_config(read_yaml(path), source=str(path)), source=str(path))


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


def replaces_default(config: dict) -> bool:
    """Whether the config files given replace the embedded default instead of merging into it: one says
    ``standalone: true`` (config/paper.yaml), or derives from another config (``derive``: config/rehearsal.yaml)."""
    return bool(config.get("standalone")) or DERIVE_KEY in config


def workflow_config(files: list[str | Path], default: str | Path = DEFAULT_CONFIG) -> dict:
    """The config the Snakefile sees with ``--configfile FILES``: the files merged in order into the embedded
    default, unless they replace it (:func:`replaces_default`), in which case they alone, derived."""
    given = {}
    for path in files:
        merge_config(given, read_yaml(path))
    if replaces_default(given):
        return derive_config(given, source=" + ".join(map(str, files)))
    return merge_config(read_yaml(default), given)


def config_sources(files: list[str | Path], default: str | Path = DEFAULT_CONFIG) -> tuple[list[str], dict[str, str]]:
    """Which files :func:`workflow_config` combines, in order (the embedded default first unless the files replace
    it), and for each top-level key the last of them that sets it (keys no file sets come from the schema's
    defaults)."""
    given = [(str(path), read_yaml(path)) for path in files]
    merged = {}
    for _, content in given:
        merge_config(merged, copy.deepcopy(content))
    layers = given if replaces_default(merged) else [(f"{default} (the embedded default)", read_yaml(default)), *given]
    layers = [layer for name, content in layers for layer in _with_bases(name, content)]
    sources = {}
    for name, content in layers:
        sources.update(dict.fromkeys(content, name))
    return [name for name, _ in layers], sources


def _with_bases(name: str, content: dict) -> list[tuple[str, dict]]:
    """A config file preceded by the configs it derives from (``derive.from``, base first)."""
    derive = content.get(DERIVE_KEY) if isinstance(content, dict) else None
    if not isinstance(derive, dict) or "from" not in derive:
        return [(name, content)]
    base = derive["from"]
    return [*_with_bases(base, read_yaml(WORKFLOW_DIR / base)), (name, content)]


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


# --- Derived configs (``derive:``): a config written as the changes to another one ------------------------------

DERIVE_KEY = "derive"
WORKFLOW_DIR = SCHEMA_PATH.parent.parent


def merge_patch(target: Any, patch: Any) -> Any:
    """``patch`` applied to ``target`` as a JSON Merge Patch (RFC 7396), without changing either: mappings merge key by
    key, a null value deletes its key (so the schema's default applies again), anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _patch_existing(target: dict, patch: dict) -> dict:
    """``merge_patch`` that leaves alone a key whose value is null when the patch holds a mapping for it: a patch
    refines settings that are switched on (e.g. ``multi_crop: {size: 16}`` changes only the recipes with
    multi-crop) and adds the ones that are absent."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if isinstance(value, dict) and key in result and result[key] is None:
            continue
        if isinstance(value, dict) and key not in result:
            result[key] = merge_patch(None, value)
            continue
        if isinstance(value, dict) and isinstance(result[key], dict):
            result[key] = _patch_existing(result[key], value)
        elif value is None:
            result.pop(key, None)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _derive_chain(
    config: dict, workflow_dir: Path, source: str, schema: dict, chain: tuple[str, ...]
) -> tuple[dict, list[dict]]:
    """(The config merged onto its bases, without defaults; the ``each`` sections, innermost base first.)"""
    if not isinstance(config, dict) or DERIVE_KEY not in config:
        return config, []
    derive = config[DERIVE_KEY]
    derive_schema = {"type": "object", "properties": {DERIVE_KEY: schema["properties"][DERIVE_KEY]}}
    problems = [
        line
        for error in Draft202012Validator(derive_schema).iter_errors({DERIVE_KEY: derive})
        for line in _describe(error, derive_schema)
    ]
    if problems:
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))
    base_path = (workflow_dir / derive["from"]).resolve()
    if str(base_path) in chain:
        raise ConfigError(f"{source}: {DERIVE_KEY}.from: {derive['from']} derives from itself")
    base, each = _derive_chain(
        read_yaml(base_path, f"{source}: {DERIVE_KEY}.from: config"),
        workflow_dir,
        str(base_path),
        schema,
        (*chain, str(base_path)),
    )
    overlay = {key: value for key, value in config.items() if key != DERIVE_KEY}
    return merge_patch(base, overlay), each + [derive.get("each") or {}]


def derive_config(
    config: dict, workflow_dir: str | Path = WORKFLOW_DIR, source: str = "config", schema: dict | None = None
) -> dict:
    """Resolve a ``derive`` section: the config it names (``derive.from``, relative to the workflow folder; itself
    possibly derived) with the rest of this config merged onto it as a JSON Merge Patch (RFC 7396). Then, on the
    merged config with the schema's defaults filled in, ``derive.each.recipe`` is patched into every
    ``pretrain.recipes`` entry and ``derive.each.experiment`` into every ``pretrain.matrix`` and
    ``pretrain.experiments`` entry (see :func:`_patch_existing`; the innermost base's ``each`` first).
    Returns the resolved, validated config without ``derive``; a config without it is returned unchanged."""
    if not isinstance(config, dict) or DERIVE_KEY not in config:
        return config
    schema = load_schema() if schema is None else schema
    merged, patches = _derive_chain(config, Path(workflow_dir), source, schema, ())
    merged = validate_config(merged, schema, source=f"{source} (merged onto {config[DERIVE_KEY]['from']})")
    pretrain = merged["pretrain"]
    for each in patches:
        if each.get("recipe"):
            pretrain["recipes"] = {
                name: _patch_existing(recipe, each["recipe"]) for name, recipe in pretrain["recipes"].items()
            }
        if each.get("experiment"):
            pretrain["matrix"] = [_patch_existing(entry, each["experiment"]) for entry in pretrain["matrix"]]
            pretrain["experiments"] = {
                name: _patch_existing(entry, each["experiment"]) for name, entry in pretrain["experiments"].items()
            }
    return validate_config(merged, schema, source=f"{source} (after {DERIVE_KEY}.each)")
