"""SegmentTemplate identifiers (ISO/IEC 23009-1 5.3.9.4.4): ``$RepresentationID$``,
``$Number$``, ``$Bandwidth$``, ``$Time$`` and ``$SubNumber$``, each with an optional printf
width (``$Number%05d$``), and ``$$`` for a dollar sign. Pure."""

from __future__ import annotations

import re
from typing import Mapping, Union

from ...errors import InvalidResponseError

_IDENTIFIER = re.compile(r"\$(RepresentationID|Number|Bandwidth|Time|SubNumber|)(%0?[0-9]{0,3}[diuxXo])?\$")


def fill(pattern: str, values: Mapping[str, Union[int, str]], url: str) -> str:
    """``pattern`` with each identifier replaced; InvalidResponseError for an identifier the
    pattern uses without a value (``$Time$`` in a template without times, say) or a width
    on ``$RepresentationID$`` (the standard forbids it)."""

    def one(match: "re.Match[str]") -> str:
        name, spec = match.group(1), match.group(2)
        if not name:
            return "$" if spec is None else match.group(0)
        if name not in values:
            raise InvalidResponseError(
                f"DASH SegmentTemplate {pattern[:100]!r} uses ${name}$, which has no value here", url=url
            )
        value = values[name]
        if spec is None:
            return str(value)
        if isinstance(value, str):
            raise InvalidResponseError(f"DASH SegmentTemplate {pattern[:100]!r}: ${name}$ takes no format", url=url)
        return ("%" + spec[1:-1] + {"i": "d", "u": "d"}.get(spec[-1], spec[-1])) % value

    return _IDENTIFIER.sub(one, pattern)
