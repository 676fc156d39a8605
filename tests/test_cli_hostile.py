"""The command line against hostile servers and careless arguments (issue #18): --timeout
bounds every wait, bad values are usage errors, ``get -o -`` and ``-o /dev/null``, a cache
listing that creates nothing, plurals, and one-line errors (never a traceback)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from kithara_io.cli import main as cli
from tests.servers.faults import BadContentRange, HtmlPage, Latency, StallForever
from tests.test_cli import REPO, assert_one_line_error, run_cli

DATA = os.urandom(3 << 20)


@pytest.fixture
def url(fault_server) -> str:
    return fault_server.add("/a.bin", DATA)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", [Latency(math.inf), StallForever(after_bytes=1000)], ids=["no-answer", "body-stalls"])
def test_timeout_bounds_every_wait(fault_server, url, fault, tmp_path) -> None:
    fault_server.always("/a.bin", fault)
    started = time.monotonic()
    proc = run_cli("get", url, "-o", str(tmp_path / "out.bin"), "--timeout", "1", "--retries", "1")
    elapsed = time.monotonic() - started
    assert proc.returncode in (1, 2), proc.stderr
    assert "kithara-io: error: " in proc.stderr and "Traceback" not in proc.stderr
    assert "timed out" in proc.stderr and "timeout=30" not in proc.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s with --timeout 1 (the read timeout was 30 s)"


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_timeout_must_be_a_positive_number(value, capsys) -> None:
    assert cli.main(["info", "x.wav", "--timeout", value]) == 2
    assert_one_line(capsys.readouterr().err, "--timeout", "seconds > 0")


def assert_one_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kithara-io: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def test_get_to_stdout_writes_the_bytes_and_keeps_progress_off_it(url) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kithara_io", "get", url, "-o", "-"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DATA
    assert b"saved standard output" in proc.stderr and b"error" not in proc.stderr


def test_get_to_dev_null(url) -> None:
    proc = run_cli("get", url, "-o", "/dev/null")
    assert proc.returncode == 0, proc.stderr
    assert "saved /dev/null" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("action, expected", [
    ("ls", "cache is empty"),
    ("size", "0 B (0 bytes) in 0 entries"),
    ("clear", "removed 0 entries"),
])  # fmt: skip
def test_cache_commands_do_not_create_a_missing_directory(tmp_path, action, expected) -> None:
    missing = tmp_path / "no" / "cache"
    proc = run_cli("cache", action, "--cache-dir", str(missing))
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout.startswith(expected)
    assert not missing.exists() and not missing.parent.exists()


def test_empty_cache_listing_says_so_and_counts_are_singular(tmp_path, url, capsys) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()

    def out(*args: str) -> str:
        assert cli.main([*args, "--cache-dir", str(cache_dir)]) == 0
        return capsys.readouterr().out

    assert out("cache", "ls") == f"cache is empty ({cache_dir})\n"
    assert json.loads(out("cache", "ls", "--json")) == []
    out("get", url, "-o", str(tmp_path / "out.bin"))
    assert f"({len(DATA)} bytes) in 1 entry, " in out("cache", "size")
    assert out("cache", "clear") == "removed 1 entry\n"


@pytest.fixture
def hostile_sources(fault_server, tmp_path) -> dict:
    absurd = fault_server.add("/absurd.wav", DATA)
    fault_server.always("/absurd.wav", BadContentRange("bytes 0-65535/99999999999999999999"))
    portal = fault_server.add("/portal.wav", DATA)
    fault_server.always("/portal.wav", HtmlPage())
    return {
        "absurd length": (absurd, "absurd length"),
        "html page": (portal, "HTML page"),
        "directory": (str(tmp_path), "is a directory"),
        "password": ("http://alice:s3cr3t@127.0.0.1:9/x.wav", "connection refused"),
        "not audio": (fault_server.add("/noise.wav", DATA), "cannot decode"),
        "https to http": (fault_server.add("/plain.wav", DATA).replace("http://", "https://"), "does not speak TLS"),
    }


@pytest.mark.parametrize(
    "case", ["absurd length", "html page", "directory", "password", "not audio", "https to http"]
)
def test_info_failures_are_one_line_never_a_traceback(hostile_sources, case, capsys) -> None:
    source, fragment = hostile_sources[case]
    assert cli.main(["info", source, "--retries", "1"]) == 2
    err = capsys.readouterr().err
    assert_one_line(err, fragment)
    assert "s3cr3t" not in err and "Error(" not in err


def test_info_failure_in_a_process_prints_one_line(hostile_sources) -> None:
    """The same through a real process: nothing else reaches stderr (no cffi traceback)."""
    assert_one_line_error(run_cli("info", hostile_sources["absurd length"][0], "--retries", "1"), 2, "absurd length")


def test_an_unexpected_failure_is_one_line_too(monkeypatch, capsys, media) -> None:
    """Whatever goes wrong inside (here: a decoder raising something unforeseen), the user
    gets one line and exit 1, not a traceback."""

    def broken_track(*args, **kwargs):
        raise RuntimeError("decoder state is inconsistent")

    monkeypatch.setattr(cli, "Track", broken_track)
    assert cli.main(["info", str(media["tone.wav"])]) == 1
    err = capsys.readouterr().err
    assert err == "kithara-io: error: unexpected failure: decoder state is inconsistent\n"
