"""The command line as mpv and curl users expect it (issue #27): ``devices`` and ``--device``
errors that list the outputs, ``-v``/``-q``, ``offline (cache)``, ``get`` naming the file
itself and keeping other files, progress on a slow link, Ctrl-C keeping every byte received,
``--start m:ss``, ``--help`` with examples and the bar's legend."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time

import pytest

import kithara_io
from kithara_io.cli.main import main
from kithara_io.cli.log import OneLine, level_for
from kithara_io.disk import DiskCache
from kithara_io.cli.progress import BAR_LEGEND
from tests.audio_devices import alsa_config, jack  # noqa: F401 - fixture
from tests.servers.faults import Header, Redirect, Reset, Throttle
from tests.servers.ranged import RangedServer
from tests.terminal import Terminal
from tests.test_cli import NO_JACK, REPO, assert_one_line_error, run_cli

DATA = os.urandom(3 << 20)


# -- row 3: output devices ---------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("command", [["devices"], ["play", "--list-devices"]])
def test_devices_lists_the_outputs_with_the_default_marked(jack, command) -> None:
    proc = run_cli(*command, env=jack.env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"\*\s+0  system  \(JACK Audio Connection Kit, 2 ch, 44100 Hz\)", lines[0]), lines
    assert re.fullmatch(r"\s+1  loopback  \(JACK Audio Connection Kit, 2 ch, 44100 Hz\)", lines[1]), lines
    assert lines[2].startswith("* the default")


@pytest.mark.timeout(30)
def test_devices_json(jack) -> None:
    proc = run_cli("devices", "--json", env=jack.env)
    devices = json.loads(proc.stdout)
    assert [(d["index"], d["name"], d["channels"], d["default"]) for d in devices] == [
        (0, "system", 2, True),
        (1, "loopback", 2, False),
    ]
    assert {d["hostapi"] for d in devices} == {"JACK Audio Connection Kit"}


@pytest.mark.timeout(30)
def test_an_unknown_device_is_one_line_naming_the_outputs(jack, media) -> None:
    proc = run_cli("play", "--device", "nosuch", str(media["tone.wav"]), env=jack.env)
    assert_one_line_error(proc, 1, "no output device 'nosuch'", "the output devices are: 0 'system', 1 'loopback'")


# -- row 5: -v, -q, offline --------------------------------------------------------------


def test_verbose_shows_retries_and_redirects_on_stderr(fault_server, tmp_path) -> None:
    url = fault_server.add("/a.bin", DATA)
    fault_server.script("/a.bin", [Reset(after_bytes=30_000)] * 2)  # the head and tail fetches
    fault_server.always("/old.bin", Redirect("/a.bin"))
    old = fault_server.url("/old.bin")
    quiet = run_cli("get", url, "-o", str(tmp_path / "one.bin"))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # by default: nothing
    fault_server.script("/a.bin", [Reset(after_bytes=30_000)] * 2)  # the head and tail fetches
    proc = run_cli("get", "-v", old, "-o", str(tmp_path / "two.bin"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "two.bin").read_bytes() == DATA
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"kithara-io: {old} redirected to {url}") for line in lines), lines
    assert any(line.startswith("kithara-io: retrying ") and " after " in line for line in lines), lines
    assert all(line.startswith("kithara-io: ") for line in lines)  # one line per record
    assert not any("tail request" in line for line in lines)  # a debug record
    fault_server.script("/a.bin", [Reset(after_bytes=30_000)] * 2)
    debug = run_cli("get", url, "-vv", "-o", str(tmp_path / "three.bin"))
    assert debug.returncode == 0 and (tmp_path / "three.bin").read_bytes() == DATA
    assert f"kithara-io: tail request of {url} broke off: " in debug.stderr, debug.stderr


def test_log_records_are_one_line_each_and_clear_the_status_line_on_a_terminal() -> None:
    record = logging.LogRecord("kithara_io.reading.remote", logging.ERROR, __file__, 1, "kithara-io: %s", ("a\n  b",), None)
    assert OneLine("kithara-io", clear_line=False).format(record) == "kithara-io: error: a b"
    assert OneLine("kithara-io", clear_line=True).format(record) == "\r\x1b[Kkithara-io: error: a b"
    assert [level_for(v) for v in (0, 1, 2, 3)] == [logging.CRITICAL + 1, logging.INFO, logging.DEBUG, logging.DEBUG]


def test_quiet_prints_only_errors(fault_server, tmp_path) -> None:
    url = fault_server.add("/a.bin", DATA)
    proc = run_cli("-q", "get", url, "-o", str(tmp_path / "a.bin"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert (tmp_path / "a.bin").read_bytes() == DATA
    proc = run_cli("get", url, "-q", "-o", str(tmp_path / "missing" / "a.bin"))
    assert_one_line_error(proc, 1, "No such file or directory")
    assert_one_line_error(run_cli("-q", "-v", "info", url), 2, "-v and -q")


def test_stream_stats_say_offline_only_when_the_cache_serves_without_the_server(media_dir, media, tmp_path) -> None:
    server = RangedServer(media_dir)
    url = server.url("small.bin")
    options = {"cache": DiskCache(tmp_path / "cache")}
    try:
        with kithara_io.open(url, **options) as stream:
            assert stream.read() == media["small.bin"].read_bytes()
            assert stream.stats().offline is False
    finally:
        server.stop()
    with kithara_io.open(url, retry=kithara_io.Retry(attempts=1), **options) as stream:
        assert stream.read() == media["small.bin"].read_bytes()
        assert stream.stats().offline is True


@pytest.mark.timeout(60)
def test_play_from_the_disk_cache_offline_says_so(media_dir, media, tmp_path) -> None:
    server = RangedServer(media_dir)
    url = server.url("tone.flac")
    cache_dir = str(tmp_path / "cache")
    try:
        assert main(["-q", "get", url, "-o", str(tmp_path / "tone.flac"), "--cache-dir", cache_dir]) == 0
    finally:
        server.stop()
    env = {"ALSA_CONFIG_PATH": str(alsa_config(tmp_path, "null")), **NO_JACK}
    proc = run_cli("play", "-v", url, "--cache-dir", cache_dir, "--retries", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("finished  0:04 / 0:04 [") and "offline (cache)" in last, last
    assert "kithara-io: warning: disk cache: " in proc.stderr and "serving the cached copy" in proc.stderr


# -- row 6: get names the file, a directory, no overwriting --------------------------------


def test_get_without_o_names_the_file_after_the_url(ranged_server, media, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["get", ranged_server.url("random.bin") + "?token=1"]) == 0
    assert (tmp_path / "random.bin").read_bytes() == media["random.bin"].read_bytes()
    assert "saved random.bin " in capsys.readouterr().out


@pytest.mark.parametrize("slash", ["/", ""])
def test_get_into_a_directory(ranged_server, media, tmp_path, slash, capsys) -> None:
    (tmp_path / "music").mkdir()
    assert main(["get", ranged_server.url("tone.mp3"), "-o", str(tmp_path / "music") + slash]) == 0
    assert (tmp_path / "music" / "tone.mp3").read_bytes() == media["tone.mp3"].read_bytes()


def test_get_into_a_missing_directory_is_an_error(ranged_server, tmp_path, capsys) -> None:
    assert main(["get", ranged_server.url("tone.mp3"), "-o", str(tmp_path / "nope") + "/"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("header, name", [
    ('attachment; filename="song one.mp3"', "song one.mp3"),
    ("attachment; filename*=UTF-8''%C3%A9t%C3%A9.flac", "\u00e9t\u00e9.flac"),
    ('attachment; filename="../../outside/evil.mp3"', "evil.mp3"),  # like curl -OJ: the last part
    ('attachment; filename="..\\\\..\\\\win.mp3"', "win.mp3"),
    ('attachment; filename=".."', "dl"),  # no usable name: the URL's
    ('attachment; filename=".bashrc"', "dl"),
])  # fmt: skip
def test_get_names_the_file_after_content_disposition_safely(fault_server, tmp_path, monkeypatch, header, name) -> None:
    url = fault_server.add("/x/dl", DATA)
    fault_server.always("/x/dl", Header("Content-Disposition", header))
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert main(["-q", "get", url]) == 0
    assert [p.name for p in work.iterdir()] == [name]
    assert (work / name).read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["a", "b", name])  # nothing elsewhere


def test_get_of_a_url_without_a_file_name_asks_for_o(fault_server, tmp_path, monkeypatch, capsys) -> None:
    fault_server.add("/dir/", DATA)
    monkeypatch.chdir(tmp_path)
    assert main(["get", fault_server.url("/dir/")]) == 2
    assert "give -o FILE" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", [b"x" * 300_000, b"y" * (9 << 20)], ids=["different", "larger"])
def test_get_keeps_an_existing_different_file_without_force(ranged_server, media, tmp_path, capsys, existing) -> None:
    target = tmp_path / "random.bin"
    target.write_bytes(existing)
    assert main(["get", ranged_server.url("random.bin"), "-o", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kithara-io: error: {target} exists") and "--force overwrites it" in err
    assert target.read_bytes() == existing
    assert main(["get", ranged_server.url("random.bin"), "-o", str(target), "--force"]) == 0
    assert target.read_bytes() == media["random.bin"].read_bytes()


# -- row 7: progress on a slow link, Ctrl-C --------------------------------------------------

_AMOUNT = re.compile(r"\r\s*\d+% \[[#+.]*\] ([\d.]+) (B|KiB|MiB) / 3\.0 MiB ([\d.]+ (?:B|KiB|MiB)/s) ETA (\d+:\d\d)")


def _bytes(number: str, unit: str) -> float:
    return float(number) * {"B": 1, "KiB": 1024, "MiB": 1 << 20}[unit]


@pytest.mark.timeout(60)
def test_get_progress_on_a_slow_link_and_ctrl_c_keeps_every_byte(fault_server, tmp_path) -> None:
    url = fault_server.add("/slow.bin", DATA)
    fault_server.always("/slow.bin", Throttle(100_000))  # 3 MiB would take 31 s
    target = tmp_path / "slow.bin"
    term = Terminal(["get", url, "-o", str(target)], {}, shared_stderr=True)
    try:
        term.expect(" KiB/s ETA ", timeout=20)
        started = time.monotonic()
        assert not term.read_until("no such text", 1.5)  # 1.5 s of redraws
        shown = _AMOUNT.findall(term.screen)
        term.proc.send_signal(signal.SIGINT)
        term.expect("run the same command again to resume")
        code = term.close()
    finally:
        if term.proc.poll() is None:
            term.close()
    elapsed = time.monotonic() - started
    amounts = [_bytes(n, u) for n, u, _, _ in shown]
    # Redrawn about every 0.2 s with what arrived (not per MiB): many rising amounts, a rate, an ETA.
    assert len(shown) >= 1.5 / 0.4 and len(set(amounts)) >= 4, term.screen
    assert amounts == sorted(amounts) and all(eta != "0:00" for *_, eta in shown)
    assert code == 130
    # The message is a line of its own, not glued to the progress line.
    assert re.search(r"\r\n(\x1b\[K)?kithara-io: error: interrupted: [\d.]+ KiB \((\d+) of 3145728 bytes\) kept in ", term.screen), term.screen
    kept = int(re.search(r"\((\d+) of 3145728 bytes\) kept", term.screen).group(1))
    data = target.read_bytes()
    assert len(data) == kept and data == DATA[:kept]
    # Every byte shown as received is kept, not only whole MiB.
    assert 0 < amounts[-1] - 0.05 * 1024 <= kept < 1 << 20, (amounts[-1], kept, elapsed)
    # Resuming completes the file, byte for byte, fetching only the rest.
    fault_server.always("/slow.bin", None)
    proc = run_cli("get", url, "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert f"resuming {target} at " in proc.stdout
    assert target.read_bytes() == DATA


# -- row 13: --start, --help ---------------------------------------------------------------


@pytest.mark.parametrize("start, seconds", [("0:05", "5"), ("1:00:00", "3600"), ("4", "4"), ("0:04.5", "4.5")])
def test_start_past_the_end_names_the_duration(media, start, seconds) -> None:
    proc = run_cli("play", "--start", start, str(media["tone.flac"]), env=NO_JACK)
    message = f"--start {seconds} s is past the end of {media['tone.flac']} (duration 0:04, 4.000 s)"
    assert_one_line_error(proc, 2, message)


@pytest.mark.parametrize("start", ["1:75", "-3", "nan", "1:2:3:4", "soon"])
def test_start_must_be_a_time(start) -> None:
    assert_one_line_error(run_cli("play", "--start", start, "x.wav"), 2, "--start", "not a time")


@pytest.mark.timeout(30)
def test_start_in_minutes_and_seconds_plays_from_there(jack, ranged_server) -> None:
    proc = run_cli("play", "--start", "0:02.5", ranged_server.url("tone.ogg"), env=jack.env)
    assert proc.returncode == 0, proc.stderr
    status = proc.stdout.splitlines()[1:]
    assert status[0].startswith(("playing   0:02 / 0:04 [", "buffering 0:02 / 0:04 [")), status
    assert status[-1].startswith("finished  0:04 / 0:04")


@pytest.mark.parametrize("command", [[], ["play"], ["get"]])
def test_help_has_examples_and_the_legend(command) -> None:
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "kithara-io play --start 1:23" in proc.stdout
    assert BAR_LEGEND in proc.stdout and "offline (cache)" in proc.stdout


def test_the_cli_guide_has_the_legend_and_the_new_options() -> None:
    guide = (REPO / "docs" / "guides" / "cli.md").read_text()  # the README's CLI section moved there
    assert BAR_LEGEND in guide
    for text in ("kithara-io devices", "--list-devices", "-v", "-q", "offline (cache)", "--force", "--start 1:23"):
        assert text in guide, text
