"""Case 3b: case 3 over https through the same 50 ms / 100 Mbit/s proxy.

The TLS handshake crosses the modelled link (TLS 1.3: one more RTT on a fresh connection):
time to first audio <= 4 RTT + transfer of the bytes the decoder needs; seek -> first 4 KiB
~1 RTT (<= 1.5 RTT) on the warm connection. Floors as in case 3, over ``HTTPSConnection``.
"""

from __future__ import annotations

from typing import Any, Dict

from _common import Context

from cases.latency import run_scheme

NAME = "latency_https"
TITLE = "3b. 50 ms RTT, HTTPS: seek and time to first audio"
TIMEOUT = 300


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=True)
