"""Coverage-guided fuzzing of one parser with atheris (libFuzzer), for developers.

The checks are those of ``tests/fuzz/test_parsers.py`` (each hypothesis test's inner
function), fed by libFuzzer from the corpus instead of by hypothesis. Not part of
``make test``. Install once: ``.venv/bin/pip install -e '.[fuzz]'`` (atheris has wheels for
CPython 3.8-3.11 on Linux x86_64), then, from the repository root::

    .venv/bin/python -m tests.fuzz.run_atheris hls -max_total_time=300 -artifact_prefix=/tmp/
    .venv/bin/python -m tests.fuzz.run_atheris list    # the targets

The target's corpus directory (``tests/fuzz/corpus/<dir>/``) seeds the run; what libFuzzer
finds goes to a new temporary directory (named on start), or to the first directory given
after the target (then also pass the seed directory). A crash writes the
input to ``<artifact_prefix>crash-*``: add it as an ``@example`` of the hypothesis test.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Callable, Dict, Tuple

import atheris

with atheris.instrument_imports():
    import m3u8  # noqa: F401 - instrumented: HLS parsing is mostly m3u8's

    import kithara_io.disk.index  # noqa: F401
    import kithara_io.headers  # noqa: F401
    import kithara_io.sources.hls.playlist  # noqa: F401
    import kithara_io.sources.live.icy  # noqa: F401
    import kithara_io.sources.live.shoutcast  # noqa: F401
    import kithara_io.sources.live.stations  # noqa: F401

from kithara_io.sources.live.icy import IcyDemuxer  # noqa: E402
from tests.fuzz import test_parsers as t  # noqa: E402
from tests.fuzz.harness import CORPUS, outcome  # noqa: E402


def _inner(test) -> Callable:
    return test.hypothesis.inner_test


def _text(data: bytes) -> str:
    return data.decode("latin-1")


def _icy_fields(data: bytes) -> dict:
    lines = data.decode("latin-1").split("\n")[:6]
    return {t.ICY_NAMES[i % len(t.ICY_NAMES)]: line for i, line in enumerate(lines)}


def _demuxer(data: bytes) -> None:
    """Any body, fed whole or in pieces (cut where its first bytes say): the same output."""
    if len(data) < 3:
        return
    interval, cut, body = data[0] % 64 + 1, int.from_bytes(data[1:3], "big"), data[3:]

    def run(pieces):
        demuxer = IcyDemuxer(interval)
        out = [demuxer.feed(piece) for piece in pieces]
        return b"".join(a for a, _ in out), [c for _, cs in out for c in cs]

    cut %= len(body) + 1
    whole, _ = outcome(lambda: run([body]), ())
    split, _ = outcome(lambda: run([body[:cut], body[cut:]]), ())
    assert whole == split and len(whole[0]) <= len(body)


#: target -> (corpus directory, check of one input)
TARGETS: Dict[str, Tuple[str, Callable[[bytes], None]]] = {
    "content_length": ("headers", lambda d: _inner(t.test_content_length)(value=_text(d))),
    "content_range": ("headers", lambda d: _inner(t.test_content_range)(value=_text(d))),
    "retry_after": ("headers", lambda d: _inner(t.test_retry_after)(value=_text(d))),
    "icy_headers": ("icy_head", lambda d: _inner(t.test_icy_headers)(fields=_icy_fields(d))),
    "icy_block": ("icy_block", lambda d: _inner(t.test_icy_block)(block=d[: 255 * 16])),
    "icy_demuxer": ("icy_block", _demuxer),
    "icy_head": ("icy_head", lambda d: _inner(t.test_icy_head)(head=d)),
    "stations": ("stations", lambda d: _inner(t.test_station_playlist)(data=d, url=t.STATION_URLS[0], content_type=None)),
    "hls": ("hls", lambda d: _inner(t.test_hls_playlist)(text=d.decode("utf-8-sig", errors="replace"))),
    "disk_index": ("disk_index", lambda d: _inner(t.test_disk_index)(raw=d)),
}


def main(argv) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        print("targets:", " ".join(TARGETS), file=sys.stderr)
        raise SystemExit(2 if len(argv) < 2 or argv[1] != "list" else 0)
    directory, check = TARGETS[argv[1]]
    rest = argv[2:]
    if not any(not arg.startswith("-") for arg in rest):  # new inputs go to the first directory
        rest += [tempfile.mkdtemp(prefix=f"kithara-fuzz-{argv[1]}-"), str(CORPUS / directory)]
    atheris.Setup([argv[0], *rest], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
