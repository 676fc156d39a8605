"""Case 1c: case 1 over https (nginx with a certificate of a CA made for the run).

Every client verifies the certificate against that CA (see ``_common``). Floor: one
``requests`` GET with ``iter_content(1 MiB)``, as in case 1. Target (issue #24): >= 0.9x.
"""

from __future__ import annotations

from typing import Any, Dict

from _common import Context

from cases.seq import run_scheme

NAME = "seq_https"
TITLE = "1c. sequential read(1 MiB), HTTPS"
TIMEOUT = 300


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=True)
