"""What the ``kithara-io`` sub-commands share: the exit-2 errors, the engine options the common
flags give, opening the source, the disk cache, the terminal width and ``-q``'s sink."""

from __future__ import annotations

import argparse
import io
from typing import Any, Dict, Optional, TextIO, cast

from ..api import open as open_stream
from ..disk import DiskCache
from ..errors import StreamError
from ..retry import Retry, Timeout


class _Discard(io.TextIOBase):
    """A text stream that keeps nothing (``-q``: progress and messages go here)."""

    def write(self, text: str) -> int:
        return len(text)

    def isatty(self) -> bool:
        return False


DISCARD = cast(TextIO, _Discard())  # an io.TextIOBase: a typing.TextIO by what it does


class UsageError(Exception):
    """Bad command line (exit 2)."""


class SourceError(Exception):
    """The source cannot be opened or decoded (exit 2)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _options(args: argparse.Namespace) -> Dict[str, Any]:
    # --timeout bounds every wait: connecting, and each silence while waiting for data.
    timeout = Timeout(connect=args.timeout, read=args.timeout, open=args.timeout)
    options: Dict[str, Any] = {"retry": Retry(attempts=args.retries), "timeout": timeout}
    if args.cache_dir is not None:
        options["cache"] = _disk_cache(args.cache_dir)
    elif args.cache:
        options["cache"] = "disk"
    if getattr(args, "variant", None) is not None:
        options["variant"] = int(args.variant) if args.variant.isdigit() else args.variant
    return options


def _open_source(args: argparse.Namespace, **defaults: Any) -> Any:
    try:
        return open_stream(args.source, **{**defaults, **_options(args)})
    except (StreamError, ValueError) as exc:
        raise SourceError(_one_line(exc)) from None


def _disk_cache(directory: Optional[str]) -> DiskCache:
    where = directory or "the user cache directory"
    try:
        return DiskCache(directory)
    except FileExistsError:
        raise UsageError(f"--cache-dir {directory} is not a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot use {where}: {_one_line(exc)}") from None


def _terminal_width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns - 1)
