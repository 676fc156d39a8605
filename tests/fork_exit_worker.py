"""A process that forks with a stream open, for tests/test_fork.py: ``python -m
tests.fork_exit_worker URL CA DATA_FILE CHILD_EXIT`` (CA ``-``: plain http).

The parent reads at random (a libcurl connection is left idle in the shared store), prints
``forking`` and waits for a line on stdin; the child reads at random on the inherited stream and
on a new stream of the same origin, closes them, and exits the way CHILD_EXIT says:
``normal`` (``sys.exit``: the interpreter's finalization runs, as at the end of a script) or
``_exit`` (``os._exit``). The parent prints ``child N`` (its exit code), waits for a line on
stdin, reads at random again, and prints ``done``. A wrong byte exits with an error."""

from __future__ import annotations

import os
import random
import sys

import kithara_io
from kithara_io import Retry, Timeout

KiB = 1024


def reads(f, data: bytes, seed: int, n: int) -> None:
    rng = random.Random(seed)
    for _ in range(n):
        pos = rng.randrange(0, len(data) - 64 * KiB)
        f.seek(pos)
        assert f.read(64 * KiB) == data[pos : pos + 64 * KiB], f"wrong bytes at {pos}"


def main(url: str, ca: str, data_file: str, child_exit: str) -> None:
    with open(data_file, "rb") as file:
        data = file.read()
    # One attempt: a connection broken under a request is an error here, not a retry.
    options = dict(tail=0, retry=Retry(attempts=1), timeout=Timeout(connect=5, read=10))
    if ca != "-":
        options["verify"] = ca
    f = kithara_io.open(url, **options)
    reads(f, data, 1, 6)
    print("forking", flush=True)
    sys.stdin.readline()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            reads(f, data, 2, 4)
            with kithara_io.open(url, **options) as g:
                reads(g, data, 3, 4)
            f.close()
            code = 0
        finally:
            sys.stdout.flush()
            if child_exit == "_exit":
                os._exit(code)
            sys.exit(code)  # the interpreter's finalization runs: every object is freed
    _, status = os.waitpid(pid, 0)
    print(f"child {os.waitstatus_to_exitcode(status)}", flush=True)
    sys.stdin.readline()
    reads(f, data, 4, 10)
    f.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
