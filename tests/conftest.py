"""The tests' fixtures; every other shared helper is in tests/helpers.py."""

import pytest


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """`make test` runs the tests on two pytest-xdist workers, a test file at a time (`--dist loadfile`): a file's
    module-scoped fixtures, some of them runs of the workflow, are built once. On the workers, the files that run the
    workflow end to end go first, so that the long runs start early and the short tests fill in beside them."""
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    long_runs = {item.path for item in items if item.get_closest_marker("workflow") and item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in long_runs)  # stable: collection order otherwise
