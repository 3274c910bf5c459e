"""The package's tiers (docs/architecture.md): a module imports only modules of its own tier or of the tiers below
it, never round in a cycle, and the modules the Snakefile imports while it parses stay free of the heavy libraries."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "genview"

#: The tiers, bottom to top, each a list of units: a package or module of genview (``genview``: the package's own
#: ``genview/__init__.py``). A module belongs to the unit that is the longest prefix of its name. docs/architecture.md
#: lists the same tiers with what lives in each.
TIERS = {
    "foundation": [
        "genview",
        "genview.errors",
        "genview.io",
        "genview.vocabulary",
        "genview.contracts",
        "genview.registry",
        "genview.method_catalog",
        "genview.cli_args",
        "genview.config",
        "genview.config.load",
    ],
    "runtime": ["genview.runtime"],
    "inputs": ["genview.data", "genview.models", "genview.rehearsal"],
    "method": ["genview.methods", "genview.analysis", "genview.generation", "genview.quality"],
    "learning": ["genview.training", "genview.evaluation"],
    "report": ["genview.report"],
    "workflow": [
        "genview.config.resolve",
        "genview.config.estimate",
        "genview.config.docs",
        "genview.config.cli",
        "genview.cli",
        "genview.__main__",
    ],
}
UNITS = {unit: rank for rank, units in enumerate(TIERS.values()) for unit in units}
TIER_NAMES = list(TIERS)
#: The dress rehearsal's builder is fenced: one command imports it, and it imports only the foundation and the model
#: loaders it builds for, so nothing a real run computes can depend on it.
FENCED = {"genview.rehearsal": {"imported_by": set(), "imports": {*TIERS["foundation"], "genview.models"}}}

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


def unit(module: str) -> str:
    """The unit a module belongs to: the longest unit name that is the module or a package above it."""
    return max((u for u in UNITS if module == u or module.startswith(u + ".")), key=len)


def tier(module: str) -> str:
    return TIER_NAMES[UNITS[unit(module)]]


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


def package_imports() -> dict[str, list[tuple[str, int, str]]]:
    """Module -> (file, line, imported module) for every genview import of every module of the package."""
    imports = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        imports[module] = [
            (str(path.relative_to(REPO)), line, imported)
            for line, imported in genview_imports(path.read_text(), module, path.name == "__init__.py")
        ]
    return imports


def tier_violations(imports: dict) -> list[str]:
    return [
        f"{where}:{line} imports {imported}: tier {tier(imported)!r} is above {tier(module)!r}"
        for module, found in imports.items()
        for where, line, imported in found
        if UNITS[unit(imported)] > UNITS[unit(module)]
    ]


def unit_cycles(imports: dict) -> list[list[str]]:
    """Cycles among the units (within a tier, imports may go either way, but never round)."""
    graph: dict[str, set[str]] = {}
    for module, found in imports.items():
        for _, _, imported in found:
            if unit(imported) != unit(module):
                graph.setdefault(unit(module), set()).add(unit(imported))
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def fence_violations(imports: dict) -> list[str]:
    problems = []
    for fenced, rules in FENCED.items():
        for module, found in imports.items():
            for where, line, imported in found:
                if unit(imported) == fenced and unit(module) != fenced and module not in rules["imported_by"]:
                    problems.append(f"{where}:{line} imports the fenced {fenced}")
                if unit(module) == fenced and unit(imported) not in {fenced, *rules["imports"]}:
                    problems.append(f"{where}:{line}: the fenced {fenced} imports {imported}")
    return problems


def test_every_module_is_in_a_unit_and_every_unit_exists():
    modules = {module_name(path) for path in PACKAGE.rglob("*.py")}
    assert all(any(m == u or m.startswith(u + ".") for u in UNITS) for m in modules)
    assert {u for u in UNITS if not any(m == u or m.startswith(u + ".") for m in modules)} == set()


def test_modules_import_only_their_tier_and_below_without_cycles():
    imports = package_imports()
    problems = tier_violations(imports) + fence_violations(imports)
    assert not problems, "imports against the tiers of docs/architecture.md:\n  " + "\n  ".join(problems)
    assert unit_cycles(imports) == []


def test_the_checks_catch_an_upward_import_a_cycle_and_a_breach_of_the_fence():
    imports = {
        "genview.data.shapes": [("genview/data/shapes.py", 3, "genview.training.train")],
        "genview.methods.simclr": [("genview/methods/simclr.py", 5, "genview.quality.weights")],
        "genview.quality.weights": [("genview/quality/weights.py", 7, "genview.methods")],
        "genview.report.tables": [("genview/report/tables.py", 9, "genview.rehearsal.build")],
        "genview.rehearsal.build": [("genview/rehearsal/build.py", 11, "genview.data.shapes")],
    }
    assert tier_violations(imports) == [
        "genview/data/shapes.py:3 imports genview.training.train: tier 'learning' is above 'inputs'"
    ]
    assert unit_cycles(imports) == [["genview.methods", "genview.quality", "genview.methods"]]
    assert fence_violations(imports) == [
        "genview/report/tables.py:9 imports the fenced genview.rehearsal",
        "genview/rehearsal/build.py:11: the fenced genview.rehearsal imports genview.data.shapes",
    ]


def test_the_import_scan_sees_every_form():
    source = (
        "import genview.io\nfrom genview.runtime import distributed\nfrom genview import __version__\n"
        "from . import heads\nfrom ..errors import ConfigError\n"
        "def f():\n    from genview.training.train import train\n"
    )
    assert genview_imports(source, "genview.methods.simclr", is_package=False) == [
        (1, "genview.io"),
        (2, "genview.runtime"),
        (2, "genview.runtime.distributed"),
        (3, "genview"),
        (4, "genview.methods"),
        (4, "genview.methods.heads"),
        (5, "genview.errors"),
        (7, "genview.training.train"),
    ]
    assert genview_imports("from .protocols import knn\n", "genview.evaluation", is_package=True) == [
        (1, "genview.evaluation.protocols"),
        (1, "genview.evaluation.protocols.knn"),
    ]


def test_the_architecture_page_lists_the_tiers_and_their_units_in_order():
    page = (REPO / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^\d+\. \*\*(\w+)\*\*: (.*)$", page, re.MULTILINE)
    assert [name for name, _ in listed] == TIER_NAMES
    for (name, units), (_, line) in zip(TIERS.items(), listed):
        assert re.findall(r"`([\w.]+)`", line) == units, name


def snakefile_imports() -> list[str]:
    """The genview modules the Snakefile and its rules import (at parse time: rule files are Python)."""
    pattern = re.compile(r"^\s*(?:from\s+(genview[\w.]*)\s+import|import\s+(genview[\w.]*))", re.MULTILINE)
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    return sorted({a or b for path in files for a, b in pattern.findall(path.read_text())})


def test_light_modules_import_no_heavy_library():
    modules = snakefile_imports()
    assert {"genview.config.resolve", "genview.config.load"} <= set(modules), modules  # the scan finds them
    code = (
        f"import importlib, sys\nfor module in {[*modules, *LIGHT_ALSO]!r}:\n    importlib.import_module(module)\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]", f"importing {modules + list(LIGHT_ALSO)} loads {loaded.stdout.strip()}"


#: The longest a function of the package may be (docs/architecture.md): past it, split it into named steps.
MAX_FUNCTION_LINES = 60


def long_functions(source: str, where: str) -> list[str]:
    """``where:line name (N lines)`` for every function or method in ``source`` longer than MAX_FUNCTION_LINES,
    counted from its ``def`` line to its last line."""
    return [
        f"{where}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_of_the_package_is_longer_than_the_limit():
    found = [f for path in sorted(PACKAGE.rglob("*.py")) for f in long_functions(path.read_text(), path.name)]
    assert found == []
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 1))
    assert long_functions(f"def ok():\n{body}", "a.py") == []
    assert long_functions(
        f"class A:\n    def long(self):\n{body}        pass\n".replace("\n    x", "\n        x"), "a.py"
    ) == [f"a.py:2 long ({MAX_FUNCTION_LINES + 1} lines)"]
