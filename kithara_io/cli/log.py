"""``-v``/``-vv``/``-q`` of the command line: the library's log on stderr, one line a record.

The library only logs (its ``kithara_io`` logger has a NullHandler); the command line adds a
handler for one run: nothing by default (failures are reported once, as the one-line error),
INFO and up with ``-v`` (retries, redirects, disk cache offline), DEBUG with ``-vv``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

LOGGER = "kithara_io"


class OneLine(logging.Formatter):
    """``kithara-io: retrying ...`` / ``kithara-io: warning: ...``: one line, no logger names.

    On a terminal the line first clears the status line drawn in place (the next redraw puts
    it back below), so a record is never glued to it."""

    def __init__(self, prog: str, clear_line: bool) -> None:
        super().__init__()
        self._prog = prog
        self._clear = "\r\x1b[K" if clear_line else ""

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split())
        if message.startswith(self._prog + ": "):
            message = message[len(self._prog) + 2 :]
        level = "" if record.levelno <= logging.INFO else record.levelname.lower() + ": "
        return f"{self._clear}{self._prog}: {level}{message}"


def level_for(verbose: int) -> int:
    """The lowest level shown: nothing below CRITICAL+1 by default, INFO for -v, DEBUG for -vv."""
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    return logging.CRITICAL + 1


@contextlib.contextmanager
def library_log(prog: str, verbose: int) -> Iterator[None]:
    """Show the library's records on stderr while the block runs (``verbose`` > 0)."""
    if verbose <= 0:
        yield
        return
    logger = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLine(prog, _isatty(sys.stderr)))
    saved = logger.level
    logger.setLevel(level_for(verbose))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False
