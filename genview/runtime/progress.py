"""Progress of long loops, one way everywhere: a tqdm configured here.

On a terminal it is tqdm's usual bar. A workflow job's stderr is its log file, not a terminal: there tqdm's
carriage-return redraws would pile up on one line, so each redraw becomes a log record of its own (with the
timestamp of the job's other lines), at most one every ``LOG_INTERVAL`` seconds, besides the first and the last.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

#: Seconds between two progress lines in a log file: about 120 lines an hour per loop.
LOG_INTERVAL = 30.0

log = logging.getLogger(__name__)


class _LogLines:
    """The stream tqdm writes to in a log file: each redraw ("\\r" + status + padding) is logged as one line."""

    def write(self, text: str) -> None:
        line = text.strip()
        if line:  # the lone "\n" of close() and the blanking of leave=False carry no status
            log.info("%s", line)

    def flush(self) -> None:
        pass


def progress(iterable=None, *, desc: str, total: float | None = None, unit: str = "it", **options) -> tqdm:
    """A tqdm over ``iterable`` (or advanced by hand with ``update``); ``options`` go to tqdm (``initial``,
    ``disable``, ...). Show a loss with ``set_postfix(loss=..., refresh=False)`` before ``update``: the line that
    update may write carries it.

    Use it as a context manager: a bar left open by an error is closed at exit, and its last line would then
    follow the error message, which should end the job's log."""
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, **options)
    # maxinterval too: tqdm's monitor thread otherwise forces a redraw every 10 s.
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        file=_LogLines(),
        ascii=True,
        mininterval=LOG_INTERVAL,
        maxinterval=LOG_INTERVAL,
        **options,
    )
