"""An answer's head as libcurl hands it over: one ``bytes`` per line, terminators kept,
interim (1xx) heads before the real one's, the blank line last. Decoded as Latin-1, as
``http.client`` reads a head."""

from __future__ import annotations

from typing import List, Tuple


def status_line(lines: List[bytes]) -> Tuple[int, str, int]:
    """The last status line's code (0 if it has none) and reason, and the index of the
    line after it: where that head's fields begin."""
    for i in range(len(lines) - 2, -1, -1):
        if lines[i].startswith(b"HTTP/"):
            parts = lines[i].decode("iso-8859-1").rstrip("\r\n").split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            return status, parts[2] if len(parts) > 2 else "", i + 1
    return 0, "", 0


def header_fields(lines: List[bytes]) -> List[Tuple[str, str]]:
    """``(name, value)`` of each field line, blanks around both stripped; an obsolete folded
    line (starting with a space or tab) continues the field before it."""
    fields: List[Tuple[str, str]] = []
    for line in lines:
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
        elif ":" in text:
            name, _, value = text.partition(":")
            fields.append((name.strip(), value.strip()))
    return fields
