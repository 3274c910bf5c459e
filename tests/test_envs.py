"""The conda environments, checked statically (no conda needed): every rule that runs a command names an env file;
the third-party modules its ``python -m genview <stage> <command>`` can import are provided by that env; and every
pin in an env agrees with requirements.txt (the versions the test suite runs).

Rules that run no command (``rule all``: only inputs) are exempt; every other rule, localrules included, names an
env, because with ``--use-conda`` even a small local job runs ``python -m genview`` and needs its imports.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from genview.cli import STAGES, build_parser

RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
JOB_DIRECTIVES = {"shell", "run", "script", "notebook", "wrapper", "cwl", "template_engine"}
# Modules the interpreter brings whatever the env (the env's python is the one pinned there).
NOT_THIRD_PARTY = set(sys.stdlib_module_names) | {"__future__", "genview"}


# --- Snakefile rules, parsed statically -------------------------------------------------------------------------
@dataclass
class Rule:
    name: str
    file: Path
    line: int
    directives: dict[str, str]  # directive -> the source text of its value

    def __str__(self):
        return f"rule {self.name} ({self.file.relative_to(REPO)}:{self.line})"

    def literal(self, directive: str):
        """A directive's value when it is a Python literal (a string, or implicitly concatenated strings)."""
        text = self.directives[directive].strip().removesuffix(",")
        try:
            return ast.literal_eval(f"({text})")
        except (ValueError, SyntaxError):
            pytest.fail(f"{self}: {directive}: is not a literal string, so this test cannot read it: {text}")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def parse_rules(path: Path) -> list[Rule]:
    """Each ``rule NAME:`` (or ``rule:`` with a ``name:`` directive) and its directives' source text."""
    lines = path.read_text().splitlines()
    rules = []
    for start, line in enumerate(lines):
        header = re.match(r"(\s*)rule(?:\s+(\w+))?\s*:", line)
        if not header:
            continue
        body = []
        for inner in lines[start + 1 :]:
            if inner.strip() and not inner.lstrip().startswith("#") and _indent(inner) <= len(header[1]):
                break
            body.append(inner)
        directive_indent = min(_indent(b) for b in body if b.strip())
        directives, current = {}, None
        for inner in body:
            match = re.match(r"(\w+):(.*)", inner[directive_indent:]) if _indent(inner) == directive_indent else None
            if match:
                current = match[1]
                directives[current] = match[2]
            elif current and inner.strip():
                directives[current] += "\n" + inner.strip()
        name = header[2] or directives.get("name", "?").strip()
        rules.append(Rule(name, path, start + 1, directives))
    return rules


ALL_RULES = [rule for path in RULE_FILES for rule in parse_rules(path)]
JOB_RULES = [rule for rule in ALL_RULES if JOB_DIRECTIVES & rule.directives.keys()]


def env_file(rule: Rule) -> Path:
    # Snakemake resolves a relative conda: path against the folder of the file that holds the rule.
    return (rule.file.parent / rule.literal("conda")).resolve()


def genview_commands(shell: str) -> list[tuple[str, str]]:
    """``(stage, command)`` of every ``python -m genview ...`` in a shell command (global options skipped)."""
    commands = []
    for match in re.finditer(r"python -m genview\s+([^;&|]*)", shell):
        words = [w for w in match[1].split() if not re.fullmatch(r"-.*|\{.*\}|\d+", w)]
        commands.append((words[0], words[1]))
    return commands


# --- what a command can import ----------------------------------------------------------------------------------
@cache
def module_tree(module: str) -> ast.Module:
    return ast.parse(Path(importlib.util.find_spec(module).origin).read_text())


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# Calls that name a module by a string: importlib.import_module("x"), importlib.resources.files("x.data"), ...
MODULE_BY_NAME_CALLS = {"import_module", "files", "find_spec"}


def _module_constants(module: str) -> dict[str, str]:
    """Module-level NAME = "string" assignments (a module name kept in a constant)."""
    constants = {}
    for statement in module_tree(module).body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant):
            for target in statement.targets:
                if isinstance(target, ast.Name) and isinstance(statement.value.value, str):
                    constants[target.id] = statement.value.value
    return constants


def _named_modules(module: str, node) -> set[str]:
    """The module a call like ``importlib.resources.files(PACKAGE)`` names (a literal or a module constant)."""
    if not (isinstance(node, ast.Call) and node.args):
        return set()
    function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    if function not in MODULE_BY_NAME_CALLS:
        return set()
    argument = node.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        name = argument.value
    elif isinstance(argument, ast.Name):
        name = _module_constants(module).get(argument.id, "")
    else:
        return set()
    return {name} if re.fullmatch(r"[A-Za-z_][\w.]*", name) else set()


def imported_names(module: str, nodes) -> set[str]:
    """Absolute names of the modules the import statements among ``nodes`` import (``from a import b``: ``a.b``
    when that is a module, else ``a``), and of the modules named by string in calls such as
    ``importlib.resources.files("clip_benchmark.datasets")``."""
    is_package = Path(importlib.util.find_spec(module).origin).name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in nodes:
        names |= _named_modules(module, node)
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from ..y import x
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                name = f"{base}.{alias.name}"
                names.add(name if base.startswith("genview") and _is_module(name) else base)
    return names


def _module_level(tree: ast.Module):
    """The nodes that run at import: everything but the bodies of top-level functions."""
    for statement in tree.body:
        if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from ast.walk(statement)


def _function_closure(tree: ast.Module, name: str):
    """The nodes of a top-level function and of the module's top-level functions it names, transitively."""
    functions = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(functions[current]):
            yield node
            if isinstance(node, ast.Name) and node.id in functions:
                todo.append(node.id)


def _registry_submodules(module: str, tree: ast.Module) -> set[str]:
    """A package whose registry imports its own submodules by name (``Registry(..., package=__name__)``, see
    genview.registry) can import any of them."""
    if any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Registry"
        and any(keyword.arg == "package" for keyword in node.keywords)
        for node in ast.walk(tree)
    ):
        folder = Path(importlib.util.find_spec(module).origin).parent
        return {f"{module}.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"}
    return set()


def command_function(stage: str, command: str):
    def subcommands(parser: argparse.ArgumentParser) -> dict:
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    stages = subcommands(build_parser())
    if stage not in stages or command not in subcommands(stages[stage]):
        pytest.fail(f"`python -m genview {stage} {command}` is not a command (genview.cli.STAGES registers them)")
    return subcommands(stages[stage])[command].get_default("run")


def reachable_imports(stage: str, command: str) -> dict[str, str]:
    """Every module a command can import, statically, mapped to a genview module that imports it. Every job runs
    ``genview.__main__``/``genview.cli`` and imports each stage's CLI module; of the command's own CLI module only the
    command's function counts; every other genview module reached counts whole, imports inside functions included."""
    run = command_function(stage, command)
    found: dict[str, str] = {}
    todo: list[tuple[str, str]] = []

    def add(names, importer):
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a.b/__init__ first
                if ".".join(parts[:i]) not in found:
                    found[".".join(parts[:i])] = importer
                    if parts[0] == "genview":
                        todo.append((".".join(parts[:i]), importer))

    add(["genview.__main__", "genview.cli", *(module.rpartition(".")[0] for module in STAGES)], "python -m genview")
    for module in STAGES:
        add(imported_names(module, _module_level(module_tree(module))), module)
    add(imported_names(run.__module__, _function_closure(module_tree(run.__module__), run.__name__)), run.__module__)
    while todo:
        module, _ = todo.pop()
        tree = module_tree(module)
        add(imported_names(module, ast.walk(tree)) | _registry_submodules(module, tree), module)
    return found


# --- env files and requirements.txt -----------------------------------------------------------------------------
def requirement_pins() -> dict[str, Requirement]:
    """The tested versions: requirements.txt and requirements-nodeps.txt (installed without dependencies)."""
    lines = [
        line
        for name in ("requirements.txt", "requirements-nodeps.txt")
        for line in (REPO / name).read_text().splitlines()
    ]
    pins = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {canonicalize_name(pin.name): pin for pin in pins}


def env_pins(path: Path) -> tuple[dict[str, Requirement], dict[str, str]]:
    """An env file's pip requirements and its conda packages (name -> version, "" when not pinned)."""
    pip, conda = {}, {}
    for entry in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(entry, dict):
            pip |= {canonicalize_name(Requirement(line).name): Requirement(line) for line in entry["pip"]}
        else:
            name, _, version = entry.partition("=")
            conda[canonicalize_name(name)] = version.lstrip("=")
    return pip, conda


def dependency_closure(names) -> set[str]:
    """The distributions that installing ``names`` brings (from this venv's metadata, extras left out)."""
    closure, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        for text in needs:
            need = Requirement(text)
            if need.marker is None or need.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(need.name))
    return closure


def missing_packages(env: Path, modules: dict[str, str]) -> list[str]:
    """What ``env`` lacks for ``modules``. A package requirements.txt pins must be pinned in the env too; a module
    whose package requirements.txt leaves to pip (e.g. tokenizers, via transformers) need only come with one."""
    pip, conda = env_pins(env)
    direct = pip.keys() | conda.keys()
    closure = dependency_closure(direct)
    pinned = requirement_pins()
    distributions = packages_distributions()
    problems = []
    for module, importer in sorted(modules.items()):
        top = module.split(".")[0]
        if top in NOT_THIRD_PARTY:
            continue
        if top not in distributions:
            problems.append(f"module {top} (imported by {importer}) is not installed here, so its package is unknown")
            continue
        provided_by = {canonicalize_name(d) for d in distributions[top]}
        if provided_by & direct:
            continue
        if provided_by & pinned.keys():
            pin = pinned[sorted(provided_by & pinned.keys())[0]]
            problems.append(f"module {top} (imported by {importer}) needs {pin} (as in requirements.txt)")
        elif not provided_by & closure:
            problems.append(
                f"module {top} (imported by {importer}) comes with no package of the env"
                f" ({', '.join(sorted(provided_by))})"
            )
    return problems


# --- tests ------------------------------------------------------------------------------------------------------
def test_the_parser_sees_the_workflow_rules():
    names = {rule.name for rule in ALL_RULES}
    assert {"all", "make_shapes", "index_dataset", 'f"shard_{_dataset}"', "pretrain", "evaluate"} <= names
    assert "all" not in {rule.name for rule in JOB_RULES}
    shell = (
        "python -m genview --gpus {resources.gpu} pretrain run --nproc 2 2> {log} && python -m genview -v data shard"
    )
    assert genview_commands(shell) == [("pretrain", "run"), ("data", "shard")]


@pytest.mark.parametrize("rule", JOB_RULES, ids=str)
def test_every_rule_names_an_existing_env(rule):
    assert "conda" in rule.directives, f"{rule} runs a command but has no conda: directive"
    assert env_file(rule).is_file(), f"{rule}: conda: {rule.literal('conda')} -> {env_file(rule)} does not exist"


@pytest.mark.parametrize("rule", [r for r in JOB_RULES if "conda" in r.directives], ids=str)
def test_the_env_provides_what_the_commands_import(rule):
    assert "shell" in rule.directives, f"{rule}: only shell: commands can be checked (call python -m genview)"
    commands = genview_commands(rule.literal("shell"))
    env = env_file(rule)
    assert env.is_file(), f"{rule}: conda: {rule.literal('conda')} -> {env} does not exist"
    problems = [
        f"`genview {stage} {command}`: {problem}"
        for stage, command in commands
        for problem in missing_packages(env, reachable_imports(stage, command))
    ]
    assert not problems, f"{env.relative_to(REPO)}, {rule}:\n  " + "\n  ".join(problems)


def pin_problems(env: Path) -> list[str]:
    pinned = requirement_pins()
    pip, conda = env_pins(env)
    problems = []
    for name, requirement in pip.items():
        if name not in pinned:
            problems.append(f"{requirement}: not in requirements.txt (the tests never ran with it)")
        elif not str(requirement.specifier).startswith("==") or requirement.specifier != pinned[name].specifier:
            problems.append(f"{requirement}: requirements.txt has {pinned[name]} (pins are exact: name==version)")
    for name, version in conda.items():
        if name in pinned and f"=={version}" != str(pinned[name].specifier):
            problems.append(f"conda {name}={version}: requirements.txt has {pinned[name]}")
    return problems


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_pins_match_requirements(env):
    problems = pin_problems(env)
    assert not problems, f"{env.relative_to(REPO)}:\n  " + "\n  ".join(problems)


def test_gaps_and_mismatches_are_named(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text(
        "dependencies:\n  - python=3.11\n  - pip:\n      - numpy==0.1\n      - transformers==5.24.0\n"
        "      - leftpad==1.0\n"
    )
    sklearn, numpy = requirement_pins()["scikit-learn"], requirement_pins()["numpy"]
    imports = {
        "sklearn.manifold": "genview.report.tsne",
        "numpy": "genview.io",
        "json": "genview.cli",
        "tokenizers": "genview.models.chat_llm",
    }  # tokenizers: a dependency of transformers
    assert missing_packages(env, imports) == [
        f"module sklearn (imported by genview.report.tsne) needs {sklearn} (as in requirements.txt)"
    ]
    assert pin_problems(env) == [
        f"numpy==0.1: requirements.txt has {numpy} (pins are exact: name==version)",
        "leftpad==1.0: not in requirements.txt (the tests never ran with it)",
    ]


def test_the_import_scan_follows_commands_into_functions_and_registries():
    modules = reachable_imports("evaluation", "run")
    assert "genview.evaluation.protocols.knn" in modules  # registry: imported by name at run time
    assert "sklearn" in modules  # imported inside a protocol's function
    assert "genview.runtime.gpu_lease" in modules and "yaml" in modules  # every job: genview.cli, config_cli
    assert "genview.models.tiny" not in reachable_imports("data", "shard")  # only the command's own function counts
    # Modules named by string: clip-benchmark's data files, read through importlib.resources.
    assert "clip_benchmark.datasets" in modules
