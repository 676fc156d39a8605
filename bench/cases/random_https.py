"""Case 2b: case 2 over https (nginx with a certificate of a CA made for the run).

Floor: one keep-alive ``http.client.HTTPSConnection`` (handshake made during the warm-up
reads), one Range GET per read. Target (issue #24): <= 1.3x floor, no slower than obstore.
"""

from __future__ import annotations

from typing import Any, Dict

from _common import Context

from cases.random import run_scheme

NAME = "random_https"
TITLE = "2b. random seek + read(64 KiB), HTTPS"
TIMEOUT = 300


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=True)
