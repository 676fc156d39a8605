"""Pure parsers of the numbers servers send: decimal header values, ``Content-Length``,
``Content-Range`` (RFC 9110 14.4) and ``Retry-After`` (RFC 9110 10.2.3).

A header value arrives as text decoded from Latin-1, so ``str.isdigit`` and ``\\d`` are
wrong tests of a number: they accept ``"²"`` or Arabic-Indic digits, which ``int()``
then refuses or reads. Only ASCII digits count here, and a number too long for ``int()``
(over 4300 digits) comes back clamped to :data:`HUGE`, above any length a caller accepts.
Every function returns a value or None (not a number of that form); none raises.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import Optional, Tuple

#: What a number of more than 20 digits is read as: more than any real length or delay.
HUGE = 10**20

_DIGITS = re.compile(r"[0-9]+\Z")
_CONTENT_RANGE = re.compile(r"[ \t]*bytes[ \t]+([0-9]+)-([0-9]+)/([0-9]+|\*)[ \t]*\Z", re.I)
_UNSATISFIED_RANGE = re.compile(r"[ \t]*bytes[ \t]+\*/([0-9]+)[ \t]*\Z", re.I)


def decimal(text: Optional[str]) -> Optional[int]:
    """The non-negative integer ``text`` spells in ASCII digits (surrounding blanks allowed),
    :data:`HUGE` if it has more than 20 significant digits, else None."""
    if text is None:
        return None
    text = text.strip(" \t\r\n")
    if not _DIGITS.match(text):
        return None
    significant = text.lstrip("0")
    return HUGE if len(significant) > 20 else int(significant or "0")


def content_coding(value: Optional[str]) -> str:
    """A ``Content-Encoding`` value, lowered: ``"identity"`` when absent or empty."""
    return (value or "").strip().lower() or "identity"


def content_length(value: Optional[str]) -> Optional[int]:
    """A ``Content-Length`` value, or None when absent or not a plain decimal number."""
    return decimal(value)


def content_range(value: Optional[str]) -> Optional[Tuple[int, int, Optional[int]]]:
    """``bytes FIRST-LAST/TOTAL`` as ``(first, last, total)`` (``total`` None for ``*``), or
    None when it is not of that form. Whether the numbers make sense is the caller's check."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None
    first, last, total = match.groups()
    return _number(first), _number(last), None if total == "*" else _number(total)


def unsatisfied_range(value: Optional[str]) -> Optional[int]:
    """The total of a 416's ``bytes */TOTAL``, or None."""
    match = _UNSATISFIED_RANGE.match(value or "")
    return _number(match.group(1)) if match else None


def retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds from a ``Retry-After`` value (delta-seconds or HTTP-date; a date in the past is
    0), or None when absent or unreadable."""
    if not value or not value.strip():
        return None
    seconds = decimal(value)
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value.strip()).timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None  # IndexError/OverflowError: odd dates some Python versions stumble on
    return max(0.0, when - (time.time() if now is None else now))


def _number(digits: str) -> int:
    value = decimal(digits)
    assert value is not None  # the patterns match ASCII digits only
    return value


__all__ = ["HUGE", "content_length", "content_range", "decimal", "retry_after", "unsatisfied_range"]
