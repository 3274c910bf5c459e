"""Errors that the command line reports as one clear message (no traceback)."""


class GenviewError(Exception):
    """A problem with the user's input: a config value, a file, a dataset."""


class ConfigError(GenviewError):
    """The configuration does not match config/schema.yaml."""


class BadInputError(GenviewError):
    """Input data that cannot be used under the configured policy."""
