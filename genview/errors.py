"""Errors that the command line reports as one clear message (no traceback)."""


class GenviewError(Exception):
    """A problem with the user's input: a config value, a file, a dataset."""


class ConfigError(GenviewError):
    """The configuration does not match config/schema.yaml, or names something that does not exist.

    ``problems`` lists each problem on its own (the message may summarise several), so that a caller collecting the
    problems of several checks can report them all at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class BadInputError(GenviewError):
    """Input data that cannot be used under the configured policy."""
