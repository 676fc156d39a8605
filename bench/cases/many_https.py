"""Case 7b: case 7 over https: 32 streams x 8 MiB at once, every client verifying the run's CA.

Targets (issue #24): aggregate >= 0.9x the 32 raw-requests threads and >= obstore's, CPU per GiB <= 1.3x.
"""

from __future__ import annotations

from typing import Any, Dict

from _common import Context

from cases.many import run_scheme

NAME = "many_https"
TITLE = "7b. 32 streams at once, HTTPS"
TIMEOUT = 420


def run(ctx: Context) -> Dict[str, Any]:
    return run_scheme(ctx, https=True)
