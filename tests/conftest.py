"""The tests' fixtures; every other shared helper is in tests/helpers.py."""

import pytest


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path
