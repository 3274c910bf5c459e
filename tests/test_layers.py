"""The package's layers (docs/architecture.md): a module imports only modules of its own layer or of the layers below
it, and the modules the Snakefile imports while it parses stay free of the heavy libraries."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "genview"

#: The layers, bottom to top: each top-level module or package of genview (``__init__``: the package's own
#: ``genview/__init__.py``). docs/architecture.md lists the same order with what lives in each layer.
LAYERS = [
    "__init__",
    "errors",
    "io",
    "runtime",
    "progress",
    "contracts",
    "config",
    "cli_args",
    "devices",
    "distributed",
    "gpu_lease",
    "method_catalog",
    "registry",
    "data",
    "models",
    "methods",
    "analysis",
    "generation",
    "quality",
    "training",
    "evaluation",
    "report",
    "estimate",
    "config_docs",
    "resolve",
    "config_cli",
    "devices_cli",
    "cli",
    "__main__",
]

#: Libraries the Snakefile's imports keep out of every Snakemake process (each job re-parses the Snakefile), and out of
#: the caption-complexity scorer, which gets its model as a callable.
HEAVY = (
    "torch",
    "torchvision",
    "timm",
    "open_clip",
    "diffusers",
    "transformers",
    "sklearn",
    "scipy",
    "matplotlib",
    "pandas",
    "numpy",
    "PIL",
)
LIGHT_ALSO = ("genview.analysis.complexity", "genview.models.chat_llm")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """``genview.x.y`` -> ``x``; ``genview`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def genview_imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every genview module ``source`` imports, anywhere in it (in functions too): ``import``
    and ``from`` forms, relative ones resolved; ``from genview.x import y`` counts ``genview.x.y`` too when ``y``
    is a module."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [
                (node.lineno, f"{target}.{alias.name}") for alias in node.names if is_module(f"{target}.{alias.name}")
            ]
    return [(line, name) for line, name in found if name == "genview" or name.startswith("genview.")]


def layer_violations(path: Path) -> list[str]:
    module = module_name(path)
    rank = LAYERS.index(layer(module))
    return [
        f"{path.relative_to(REPO)}:{line} imports {imported}: layer {layer(imported)!r} is above {layer(module)!r}"
        for line, imported in genview_imports(path.read_text(), module, path.name == "__init__.py")
        if LAYERS.index(layer(imported)) > rank
    ]


def test_every_module_is_in_a_layer():
    found = {layer(module_name(path)) for path in PACKAGE.rglob("*.py")}
    assert found - set(LAYERS) == set(), "add these to LAYERS (and docs/architecture.md)"
    assert set(LAYERS) - found == set(), "these layers no longer exist"


def test_modules_import_only_their_layer_and_below():
    problems = [problem for path in sorted(PACKAGE.rglob("*.py")) for problem in layer_violations(path)]
    assert not problems, "imports against the layers of docs/architecture.md:\n  " + "\n  ".join(problems)


def test_the_import_scan_sees_every_form():
    source = (
        "import genview.io\nfrom genview import distributed, __version__\nfrom . import heads\n"
        "from ..errors import ConfigError\ndef f():\n    from genview.training.train import train\n"
    )
    assert genview_imports(source, "genview.methods.simclr", is_package=False) == [
        (1, "genview.io"),
        (2, "genview"),
        (2, "genview.runtime.distributed"),
        (3, "genview.methods"),
        (3, "genview.methods.heads"),
        (4, "genview.errors"),
        (6, "genview.training.train"),
    ]
    assert genview_imports("from .protocols import knn\n", "genview.evaluation", is_package=True) == [
        (1, "genview.evaluation.protocols"),
        (1, "genview.evaluation.protocols.knn"),
    ]


def test_the_architecture_page_lists_the_layers_in_order():
    page = (REPO / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^\d+\. `([\w.]+)`", page, re.MULTILINE)
    assert listed == LAYERS


def snakefile_imports() -> list[str]:
    """The genview modules the Snakefile and its rules import (at parse time: rule files are Python)."""
    pattern = re.compile(r"^\s*(?:from\s+(genview[\w.]*)\s+import|import\s+(genview[\w.]*))", re.MULTILINE)
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    return sorted({a or b for path in files for a, b in pattern.findall(path.read_text())})


def test_light_modules_import_no_heavy_library():
    modules = snakefile_imports()
    assert {"genview.config.resolve", "genview.config.load"} <= set(modules), (
        modules
    )  # the scan finds the rules' imports
    code = (
        f"import importlib, sys\nfor module in {[*modules, *LIGHT_ALSO]!r}:\n    importlib.import_module(module)\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]", f"importing {modules + list(LIGHT_ALSO)} loads {loaded.stdout.strip()}"
