"""Argument helpers shared by the stage command lines (``genview/*/cli.py``).

Kept apart from :mod:`genview.cli`, which imports every stage's command line to dispatch to it: a stage importing a
helper from there would import its own importer.
"""

from __future__ import annotations

import json

from genview.errors import ConfigError


def json_argument(text: str, option: str):
    """The value of a JSON command-line option (the workflow passes config sections this way)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{option} must be JSON: {error}") from None
