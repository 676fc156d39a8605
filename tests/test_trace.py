"""Fetch timelines: the drawing comes from real events and shows what happened.

Each story runs against the throttled in-process range server; the SVG is parsed back
(xml.etree) and compared with the recorded events: one request bar per started request,
in its slot's lane, placed by its start time; one mark per seek, cancel and preemption; one
hatched span per reader wait. The CLI writes a file and exits 0; a bad URL is one line.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Dict, List

import pytest

from kithara_io.cli.main import main
from kithara_io.events import (
    FirstByte,
    Progress,
    ReaderResumed,
    ReaderWaiting,
    RequestCancelled,
    RequestCompleted,
    RequestEnqueued,
    RequestFailed,
    RequestRetrying,
    RequestStarted,
    Seek,
)
from kithara_io.reading.planning import Priority
from kithara_io.trace import Recorder, Stamped, build, draw, render
from kithara_io.trace.story import Story, run
from tests.servers.faults import FaultServer, Throttle

KiB, MiB = 1 << 10, 1 << 20
NS = {"s": "http://www.w3.org/2000/svg"}
H, L = Priority.HIGH, Priority.LOW
DATA = random.Random(26).getrandbits(8 * 3 * MiB).to_bytes(3 * MiB, "little")


def classes(el: ET.Element) -> List[str]:
    return el.get("class", "").split()


def of_class(root: ET.Element, name: str) -> List[ET.Element]:
    return [el for el in root.iter() if name in classes(el)]


def check_drawing(svg: str, rec: Recorder) -> Counter:
    """Everything the drawing must show of ``rec``'s events; returns the counts of events."""
    root = ET.fromstring(svg)
    events = [s.event for s in rec.events]
    kinds = Counter(type(e).__name__ for e in events)
    reasons = Counter(e.reason for e in events if isinstance(e, RequestCancelled))
    bars = of_class(root, "request")
    started = [e.request_id for e in events if isinstance(e, RequestStarted)]
    assert sorted(int(b.get("data-id")) for b in bars) == sorted(started)
    assert len(of_class(root, "seek")) == kinds["Seek"]
    cancels = of_class(root, "cancel")
    assert len(cancels) == kinds["RequestCancelled"]
    assert Counter(m.get("data-reason") for m in cancels) == reasons
    assert len(of_class(root, "preempted")) == reasons["preempted"]
    assert len(of_class(root, "epoch")) == reasons["epoch"]
    assert len(of_class(root, "wait")) == kinds["ReaderWaiting"]
    # every bar inside its slot's lane, the lane of the slot its request was enqueued in
    slot_of = {e.request_id: e.slot for e in events if isinstance(e, RequestEnqueued)}
    lanes: Dict[str, ET.Element] = {el.get("data-slot"): el for el in of_class(root, "slot")}
    for b in bars:
        assert b.get("data-slot") == str(slot_of[int(b.get("data-id"))])
        lane = lanes[b.get("data-slot")]
        top, bottom = float(lane.get("y")), float(lane.get("y")) + float(lane.get("height"))
        assert top <= float(b.get("y")) and float(b.get("y")) + float(b.get("height")) <= bottom
    # placed by time: x grows with the start time, linearly, and a bar ends after it starts
    starts = sorted((float(b.get("data-start")), float(b.get("x"))) for b in bars)
    assert all(t0 <= float(b.get("data-end")) for b in bars for t0 in [float(b.get("data-start"))])
    xs = [x for _, x in starts]
    assert xs == sorted(xs)
    (t_a, x_a), (t_b, x_b) = starts[0], starts[-1]
    if t_b > t_a:
        scale = (x_b - x_a) / (t_b - t_a)
        for t, x in starts:
            assert abs(x_a + (t - t_a) * scale - x) < 0.05, (t, x)
    ticks = [float(t.text) for t in of_class(root, "tick")]
    assert len(ticks) >= 2 and ticks == sorted(ticks)
    return kinds


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


@pytest.mark.timeout(30)
def test_a_seek_during_playback_is_drawn_as_it_happened(server, no_leaks) -> None:
    url = server.add("/song.flac", DATA)
    server.always("/song.flac", Throttle(2 * MiB))
    story = Story(url, seeks=[0.9], read=512 * KiB, rate=1 * MiB, options={"read_ahead": 2 * MiB, "max_fetch": 512 * KiB})
    rec = run(story)
    svg = rec.svg("seek")
    kinds = check_drawing(svg, rec)
    assert kinds["RequestStarted"] >= 3
    # (open() peeks at the first bytes: reading from 0 after it may count as a seek back too)
    assert [s.event.to_pos for s in rec.events if isinstance(s.event, Seek)][-1] == int(0.9 * len(DATA))
    # the read-ahead running behind the old position went when the reader jumped, reported
    # as cancelled (not as a completion of fewer bytes: the cancel lands before the abort)
    cancelled = [s for s in rec.events if isinstance(s.event, RequestCancelled)]
    story_told = [(round(s.t - rec.events[0].t, 3), s.event) for s in rec.events if not isinstance(s.event, (Progress, FirstByte))]
    assert any(s.event.reason == "epoch" for s in cancelled), story_told
    seek = [s.event for s in rec.events if isinstance(s.event, Seek)][-1]
    ranges = {s.event.request_id: s.event.range for s in rec.events if isinstance(s.event, RequestEnqueued)}
    assert all(ranges[s.event.request_id][1] <= seek.to_pos for s in cancelled if s.event.reason == "epoch")


@pytest.mark.timeout(30)
def test_a_high_stream_preempting_low_preloads_is_drawn(server, no_leaks) -> None:
    low = []
    for n in range(2):
        low.append(server.add(f"/low{n}.flac", DATA[: 1 * MiB]))
        server.always(f"/low{n}.flac", Throttle(2 * MiB))
    url = server.add("/high.flac", DATA[: 1 * MiB])
    server.always("/high.flac", Throttle(8 * MiB))
    rec = run(Story(url, read=512 * KiB, preload=low, max_concurrent=2, options={"max_fetch": 128 * KiB}))
    kinds = check_drawing(rec.svg("preempt"), rec)
    reasons = Counter(s.event.reason for s in rec.events if isinstance(s.event, RequestCancelled))
    assert reasons["preempted"] >= 1, reasons  # the story opens the High stream while Low work runs
    streams = {s.stream for s in rec.events}
    assert streams == {"low0.flac", "low1.flac", "high.flac"}
    slots = {(s.stream, s.event.slot) for s in rec.events if isinstance(s.event, RequestEnqueued)}
    assert {slot for name, slot in slots if name == "high.flac"} <= {0, 1}
    assert {slot for name, slot in slots if name != "high.flac"} <= {2, 3}
    assert kinds["RequestStarted"] >= 4


def test_build_and_draw_from_given_events(tmp_path: Path) -> None:
    """Every kind of request life, from hand-made events: queued and cancelled before it ran,
    retried, failed, unfinished; a wait that never resumed; overlapping bars get rows."""
    events = [
        (0.0, "a", RequestEnqueued(1, "http://x/a", (0, 100), H, H, 0)),
        (0.0, "a", RequestEnqueued(2, "http://x/a", (100, 200), H, H, 0)),
        (0.1, "a", RequestStarted(1, 0.1)),
        (0.1, "a", RequestStarted(2, 0.1)),
        (0.2, "a", FirstByte(1, 0.1)),
        (0.3, "a", RequestRetrying(2, 2, 0.1, "reset")),
        (0.5, "a", RequestCompleted(1, 100, 0.4, 250.0)),
        (0.6, "a", RequestFailed(2, OSError("boom"))),
        (0.6, "b", RequestEnqueued(3, "http://x/b", None, H, L, 2)),
        (0.7, "b", RequestCancelled(3, "closed")),
        (0.7, "a", Seek(200, 900, False)),
        (0.7, "a", ReaderWaiting(900)),
        (0.8, "a", RequestEnqueued(4, "http://x/a", (900, 1000), H, H, 0)),
        (0.8, "a", RequestStarted(4, 0.0)),
        (0.8, "b", ReaderWaiting(0)),
        (0.9, "b", ReaderResumed(0, 0.1)),
    ]
    timeline = build([Stamped(*e) for e in events], until=1.0)
    bars = {b.request_id: b for b in timeline.bars}
    assert (bars[1].outcome, bars[2].outcome, bars[3].outcome, bars[4].outcome) == ("completed", "failed", "cancelled", "running")
    assert bars[3].start is None and bars[4].end == 1.0 and bars[1].first_byte == 0.2
    assert bars[1].row != bars[2].row and timeline.rows(0) == 2 and timeline.slots == [0, 2]
    assert sorted(m.kind for m in timeline.marks) == ["cancel", "failed", "retry", "seek"]
    assert sorted((w.stream, w.end) for w in timeline.waits) == [("a", 1.0), ("b", 0.9)]
    root = ET.fromstring(render(events, "given", until=1.0))
    assert sorted(int(b.get("data-id")) for b in of_class(root, "request")) == [1, 2, 4]  # 3 never ran
    assert [q.get("data-id") for q in of_class(root, "queued")] == ["1", "2", "3"]
    assert len(of_class(root, "retry")) == len(of_class(root, "failed")) == len(of_class(root, "seek")) == 1
    assert len(of_class(root, "wait")) == 2
    titles = " ".join(t.text or "" for t in root.iter(f"{{{NS['s']}}}title"))
    assert "bytes 0-99" in titles and "the whole body" in titles and "boom" in titles
    page = draw([(t, e) for t, _, e in events], tmp_path / "t.html", "given")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    ET.fromstring(text[text.index("<svg") : text.index("</svg>") + 6])
    with pytest.raises(TypeError):
        render([RequestStarted(1, 0.0)])


@pytest.mark.timeout(30)
def test_cli_trace_writes_the_drawing(server, tmp_path: Path, capsys, no_leaks) -> None:
    url = server.add("/a.flac", DATA[: 1 * MiB])
    server.always("/a.flac", Throttle(8 * MiB))
    out = tmp_path / "t.svg"
    assert main(["trace", url, "-o", str(out), "--seek", "50%", "--read", "128KiB", "--max-fetch", "64KiB"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: ") and said.count("\n") == 1
    root = ET.fromstring(out.read_text())
    seeks = of_class(root, "seek")
    assert f"{len(seeks)} seek" in said and any("-> 524,288" in (t.text or "") for m in seeks for t in m)
    assert f"{len(of_class(root, 'request'))} requests" in said
    page = tmp_path / "t.html"
    assert main(["trace", url, "-o", str(page), "-q"]) == 0
    assert capsys.readouterr().out == "" and page.read_text().startswith("<!DOCTYPE html>")


def test_cli_trace_errors_are_one_line(tmp_path: Path, capsys, no_leaks) -> None:
    assert main(["trace", "http://127.0.0.1:9/missing.flac", "-o", str(tmp_path / "t.svg"), "--retries", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kithara-io: error: ") and err.count("\n") == 1 and "127.0.0.1:9" in err
    assert not (tmp_path / "t.svg").exists()
    assert main(["trace", "http://127.0.0.1:9/x", "--seek", "lots"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
