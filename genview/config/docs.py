"""``docs/configuration.md`` from ``config/schema.yaml``: every key with its type, default and description.

The schema is the one source of the configuration reference: ``genview config docs`` writes the page and a test fails
when the committed page differs from what the schema gives.
"""

from __future__ import annotations

import json
from pathlib import Path

from genview.config.load import SCHEMA_PATH, load_schema, resolve_ref

DOCS_PATH = SCHEMA_PATH.parent.parent / "docs" / "configuration.md"

INTRO = """# Configuration reference

Generated from `config/schema.yaml` by `genview config docs` (a test fails when this page is out of date): edit the
schema, not this page. Every config is validated against the schema before any job runs; unknown keys are errors and
the defaults below are filled in. `config/config.yaml` (the embedded default), `config/smoke.yaml` (the tests' run) and
`config/paper.yaml` (the full reproduction) are complete examples; `genview config check FILE` validates a file and
`genview config check FILE --print` shows it with every default filled in.

A key path like `pretrain.recipes.<name>.lr` means: under `pretrain.recipes`, any name you choose, then `lr`.
"""


def _ref_name(schema: dict) -> str | None:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/$defs/") else None


def _type(schema: dict, root: dict) -> str:
    name = _ref_name(schema)
    schema = resolve_ref(schema, root)
    if "enum" in schema:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "oneOf" in schema:
        return " or ".join(_type(option, root) for option in schema["oneOf"])
    kind = schema.get("type", "object" if "properties" in schema else "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds if k)
    if "array" in kinds and isinstance(schema.get("items"), dict):
        text = text.replace("array", f"list of {_type(schema['items'], root)}")
    return text or (f"see {name}" if name else "any")


def _default(schema: dict, root: dict) -> str:
    schema = resolve_ref(schema, root)
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def _describe(schema: dict, root: dict) -> str:
    text = resolve_ref(schema, root).get("description", "")
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(schema: dict, root: dict, prefix: str) -> list[str]:
    """One table row per key under ``schema``, recursing into nested objects (not into named $defs, which get a
    section of their own)."""
    rows = []
    schema = resolve_ref(schema, root)
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        name = _ref_name(sub)
        resolved = resolve_ref(sub, root)
        kind = f"[{name}](#{name})" if name and "properties" in root["$defs"][name] else _type(sub, root)
        rows.append(f"| `{path}` | {kind} | {_default(sub, root)} | {_describe(sub, root)} |")
        if not name and "properties" in resolved:
            rows += _rows(resolved, root, f"{path}.")
        extra = resolved.get("additionalProperties")
        if not name and isinstance(extra, dict):
            extra_name = _ref_name(extra)
            if extra_name and "properties" in root["$defs"][extra_name] or "allOf" in root["$defs"].get(extra_name, {}):
                continue  # documented in its own section
            if "properties" in resolve_ref(extra, root):
                rows += _rows(extra, root, f"{path}.<name>.")
    return rows


TABLE_HEADER = ["| key | type | default | description |", "|---|---|---|---|"]


def _def_sections(root: dict) -> list[str]:
    lines = []
    for name, schema in root["$defs"].items():
        properties = dict(schema.get("properties", {}))
        for branch in schema.get("allOf", []):
            branch = resolve_ref(branch, root)
            properties.update(branch.get("properties", {}))
            if "then" in branch:  # a dataset kind's own keys
                kind = branch["if"]["properties"]["kind"]["const"]
                then = {k: v for k, v in branch["then"].get("properties", {}).items() if isinstance(v, dict)}
                if then:
                    lines += [f"\n### {name}: kind `{kind}`\n", _describe(branch["then"], root), "", *TABLE_HEADER]
                    lines += _rows({"properties": then}, root, "")
        if not properties:
            continue
        lines += [f"\n## {name}\n", _describe(schema, root), "", *TABLE_HEADER]
        lines += _rows({"properties": properties}, root, "")
    return lines


def render_configuration_docs(schema: dict | None = None) -> str:
    root = schema or load_schema()
    lines = [INTRO, "## Top level\n", *TABLE_HEADER, *_rows(root, root, "")]
    lines += _def_sections(root)
    return "\n".join(line.rstrip() for line in lines).strip() + "\n"


OUTPUTS_PATH = DOCS_PATH.parent / "outputs.md"


def generated_docs() -> dict[Path, str]:
    """Every generated page and its content: the configuration reference and the outputs page."""
    from genview.contracts import outputs_doc

    return {DOCS_PATH: render_configuration_docs(), OUTPUTS_PATH: outputs_doc()}


def write_generated_docs() -> list[Path]:
    written = []
    for path, text in generated_docs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
