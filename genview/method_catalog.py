"""What each registered method is, read from the source of genview/methods without importing it (no torch).

The Snakefile and ``genview config check`` validate experiments at parse time: the method name, its options, and the
loss coefficients its kind can compute. Importing the methods would import torch in every Snakemake job, so this
module reads the literal class attributes of every ``@register("name")`` class (``kind``, ``default_options``,
``has_image_image_head``, ...) with :mod:`ast`, following base classes within the package. A test checks that the
catalog equals the imported registry, so a method written in a way this reader cannot follow fails there.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from genview.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent / "methods"
#: Class attributes the catalog reads (literal values only).
ATTRIBUTES = (
    "kind",
    "default_options",
    "has_image_image_head",
    "uses_momentum",
    "default_augmentation",
    "supports_multi_crop",
    "decay_norm_and_bias",
)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: str  # "two_view", "vision_language" or "supervised"
    default_options: dict
    has_image_image_head: bool = False
    uses_momentum: bool = False
    default_augmentation: str = "simclr"
    supports_multi_crop: bool = False
    decay_norm_and_bias: bool = False


def _literal(node: ast.expr, classes: dict[str, dict]):
    """A literal, a dict with ``**Other.attr`` spreads of classes in the package, or a bare class attribute."""
    if isinstance(node, ast.Dict):
        out: dict = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                out.update(_literal(value, classes))
            else:
                out[ast.literal_eval(key)] = _literal(value, classes)
        return out
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return _attributes(node.value.id, classes)[node.attr]
    return ast.literal_eval(node)


def _attributes(class_name: str, classes: dict[str, dict]) -> dict:
    """The class's readable attributes, inherited ones included (first base first, like a single-inheritance MRO)."""
    entry = classes[class_name]
    if "resolved" not in entry:
        resolved: dict = {}
        for base in reversed(entry["bases"]):
            if base in classes:
                resolved.update(_attributes(base, classes))
        for attribute, node in entry["assignments"].items():
            resolved[attribute] = _literal(node, classes)
        entry["resolved"] = resolved
    return entry["resolved"]


def _registered_name(decorator: ast.expr) -> str | None:
    if (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Name)
        and decorator.func.id == "register"
        and decorator.args
        and isinstance(decorator.args[0], ast.Constant)
    ):
        return decorator.args[0].value
    return None


@cache
def method_catalog() -> dict[str, MethodInfo]:
    """Method name -> :class:`MethodInfo`, for every ``@register`` class of this package."""
    classes: dict[str, dict] = {}
    registered: dict[str, str] = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for node in ast.parse(path.read_text(), filename=str(path)).body:
            if not isinstance(node, ast.ClassDef):
                continue
            assignments = {}
            for statement in node.body:
                targets = (
                    statement.targets
                    if isinstance(statement, ast.Assign)
                    else ([statement.target] if isinstance(statement, ast.AnnAssign) and statement.value else [])
                )
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in ATTRIBUTES:
                        assignments[target.id] = statement.value
            classes[node.name] = {
                "bases": [b.id for b in node.bases if isinstance(b, ast.Name)],
                "assignments": assignments,
            }
            for decorator in node.decorator_list:
                if (name := _registered_name(decorator)) is not None:
                    registered[name] = node.name
    return {
        name: MethodInfo(name=name, **{k: v for k, v in _attributes(cls, classes).items() if k in ATTRIBUTES})
        for name, cls in sorted(registered.items())
    }


def method_info(name: str, where: str = "method") -> MethodInfo:
    catalog = method_catalog()
    if name not in catalog:
        raise ConfigError(f"{where}: unknown method {name!r} (known: {', '.join(catalog)})")
    return catalog[name]
