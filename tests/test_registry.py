"""The one registry behind methods, evaluation protocols and backbones: a duplicate name fails where it is
registered; an unknown name is a config error that lists the known ones; a package's modules load on demand."""

import subprocess
import sys

import pytest
from helpers import REPO

from genview.errors import ConfigError
from genview.registry import Registry


def test_registers_by_name_and_stamps_the_name():
    things = Registry("thing", name_attribute="name")

    @things.register("b")
    class B:
        pass

    @things.register("a")
    def build_a():
        return "a"

    assert things["b"] is B and B.name == "b" and things["a"]() == "a"
    assert list(things) == ["a", "b"]


def test_a_duplicate_name_fails_where_it_is_registered():
    things = Registry("thing")
    things.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="thing 'a' registered twice"):
        things.register("a")(lambda: 2)


def test_an_unknown_name_is_a_config_error_listing_the_known_ones():
    things = Registry("thing")
    things.register("b")(lambda: 1)
    things.register("a")(lambda: 2)
    with pytest.raises(ConfigError, match=r"^unknown thing 'c' \(known: a, b\)$"):
        things["c"]


def test_the_workflow_registries_name_unknown_entries():
    from genview.evaluation.protocols import protocol_class
    from genview.methods import method_class
    from genview.training.backbones import build_backbone

    with pytest.raises(ConfigError, match=r"^unknown method 'nope' \(known: byol, clip, "):
        method_class("nope")
    with pytest.raises(ConfigError, match=r"^unknown evaluation protocol 'nope' \(known: knn, linear, "):
        protocol_class("nope")
    with pytest.raises(ConfigError, match=r"^unknown backbone 'nope' \(known: convnet, pixels, resnet18, "):
        build_backbone({"name": "nope"})


def test_a_package_registry_imports_only_the_module_it_is_asked_for():
    code = (
        "import sys\nfrom genview.evaluation.protocols import PROTOCOLS, protocol_class\n"
        "assert protocol_class('knn').name == 'knn'\n"
        "print(sorted(m for m in sys.modules if m.startswith('genview.evaluation.protocols.')))\n"
        "print(len(list(PROTOCOLS)))"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout.splitlines()
    assert printed[0] == "['genview.evaluation.protocols.knn']"
    assert int(printed[1]) == len(list((REPO / "genview/evaluation/protocols").glob("[!_]*.py")))  # listing: all


def protocol_name_problems(vocabulary: set[str], registered: set[str], schema_keys: set[str]) -> list[str]:
    """Where genview.vocabulary.PROTOCOLS, the protocol registry and the schema's evaluation sections disagree: the
    workflow plans only the vocabulary's protocols, so one missing there would be dropped without a word."""
    return [
        f"{name}: {', '.join(where for where, names in places if name not in names)} lack(s) it"
        for name in sorted(vocabulary | registered | schema_keys)
        for places in [[("vocabulary", vocabulary), ("registry", registered), ("schema", schema_keys)]]
        if any(name not in names for _, names in places)
    ]


def test_the_vocabulary_names_every_registered_protocol_and_schema_section():
    from genview.config.load import load_schema
    from genview.evaluation.protocols import PROTOCOLS as REGISTRY
    from genview.vocabulary import PROTOCOLS

    registered = set(REGISTRY)  # listing imports every protocol module
    schema = load_schema()["properties"]["evaluation"]["properties"]
    sections = set(schema) - {"batch_size", "num_workers", "runs"}
    assert protocol_name_problems(set(PROTOCOLS), registered, sections) == []
    # A protocol added to the registry and the schema but not to the vocabulary is named.
    assert protocol_name_problems(set(PROTOCOLS) - {"semisup"}, registered, sections) == [
        "semisup: vocabulary lack(s) it"
    ]
