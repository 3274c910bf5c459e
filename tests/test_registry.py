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
