"""A :class:`~kithara_io.trace.timeline.Timeline` drawn as SVG text (or an HTML page holding it).

Written by hand: the drawing is rectangles, lines and text, and a plotting library
(matplotlib: ~40 MB with numpy, a font cache at first import) would be a heavy dependency of
the library for that. Every drawn element carries its meaning in its ``class`` (``request``,
``queued``, ``wait``, ``lane``, ``mark seek``, ``mark cancel``...) and ``data-*`` attributes,
and a ``<title>`` that browsers show as the tooltip: the drawing can be checked by parsing it.

Layout, top to bottom: the title; one lane per stream (its seeks and reader waits); one lane
per Downloader slot that ran a request (a row per overlapping request); the time axis; the
legend.
"""

from __future__ import annotations

import html
import math
from typing import Dict, Iterator, List, Tuple
from xml.sax.saxutils import escape, quoteattr

from .timeline import SLOT_NAMES, Bar, Mark, Timeline, describe_range

WIDTH = 960
LEFT = 190  # lane labels
RIGHT = 24
ROW = 14  # one request row
GAP = 4  # between rows
PAD = 6  # inside a lane, above and below its rows
READER_LANE = 26
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
CANCEL_COLOURS = {"epoch": "#000000", "preempted": "#d62728"}
OTHER_CANCEL = "#7f7f7f"
FONT = "font-family='DejaVu Sans, Verdana, sans-serif' font-size='11'"
SMALL = "font-family='DejaVu Sans, Verdana, sans-serif' font-size='9.5' fill='#444'"


def _attrs(**values: object) -> str:
    return " ".join(f"{k.rstrip('_').replace('_', '-')}={quoteattr(str(v))}" for k, v in values.items())


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def nice_step(span: float, ticks: int = 8) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


class _Canvas:
    """Maps seconds to x and collects the SVG elements."""

    def __init__(self, timeline: Timeline) -> None:
        self.tl = timeline
        self.span = max(timeline.t1 - timeline.t0, 1e-3)
        self.parts: List[str] = []
        self.colours: Dict[str, str] = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(timeline.streams)}

    def x(self, t: float) -> float:
        return LEFT + (t - self.tl.t0) / self.span * (WIDTH - LEFT - RIGHT)

    def add(self, text: str) -> None:
        self.parts.append(text)


def render(timeline: Timeline, title: str = "") -> str:
    """The SVG document of ``timeline``."""
    c = _Canvas(timeline)
    y: float = 34 if title else 10
    if title:
        c.add(
            f"<text x='{LEFT}' y='20' font-weight='bold' font-family='DejaVu Sans, Verdana, sans-serif' font-size='14'>{escape(title)}</text>"
        )
    lanes: List[Tuple[str, float, float]] = []  # label, top, bottom
    reader_y: Dict[str, float] = {}
    for stream in timeline.streams:
        lanes.append((f"reader: {stream}", y, y + READER_LANE))
        reader_y[stream] = y
        c.add(
            f"<rect {_attrs(class_='lane reader', data_stream=stream, x=0, y=y, width=WIDTH, height=READER_LANE)} fill='#f7f7f7'/>"
        )
        y += READER_LANE + 2
    slot_y: Dict[int, float] = {}
    for slot in timeline.slots:
        height = 2 * PAD + timeline.rows(slot) * (ROW + GAP) - GAP
        slot_y[slot] = y
        lanes.append((f"slot {slot}\n{SLOT_NAMES[slot] if slot < len(SLOT_NAMES) else '?'}", y, y + height))
        shade = "#eef3fa" if slot % 2 == 0 else "#f5f8fc"
        c.add(
            f"<rect {_attrs(class_='lane slot', data_slot=slot, x=0, y=y, width=WIDTH, height=height)} fill='{shade}'/>"
        )
        y += height + 2
    for label, top, bottom in lanes:
        first, _, second = label.partition("\n")
        mid = (top + bottom) / 2
        if second:
            c.add(f"<text x='6' y='{_num(mid - 2)}' {FONT}>{escape(first)}</text>")
            c.add(f"<text x='6' y='{_num(mid + 10)}' {SMALL}>{escape(second)}</text>")
        else:
            c.add(f"<text x='6' y='{_num(mid + 4)}' {FONT}>{escape(_short(first, 30))}</text>")
    chart_top, chart_bottom = (34 if title else 10), y
    for w in timeline.waits:
        top = reader_y[w.stream] + 4
        width = max(c.x(w.end) - c.x(w.start), 1.0)
        tip = f"{w.stream}: read waits {w.end - w.start:.3f} s for byte {w.position:,}"
        c.add(
            f"<rect {_attrs(class_='wait', data_stream=w.stream, data_start=_num(w.start - timeline.t0), x=_num(c.x(w.start)), y=_num(top), width=_num(width), height=READER_LANE - 8)}"
            f" fill='url(#hatch)' stroke='#555'><title>{escape(tip)}</title></rect>"
        )
    for b in timeline.bars:
        _bar(c, b, slot_y[b.slot])
    bar_by_id = {b.request_id: b for b in timeline.bars}
    for m in timeline.marks:
        if m.request_id is not None and m.request_id in bar_by_id:
            b = bar_by_id[m.request_id]
            _bar_mark(c, m, slot_y[b.slot] + PAD + b.row * (ROW + GAP))
        else:
            _stream_mark(c, m, reader_y.get(m.stream, chart_top), chart_top, chart_bottom)
    y = _axis(c, chart_top, chart_bottom)
    y = _legend(c, y + 8)
    head = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{_num(y)}' viewBox='0 0 {WIDTH} {_num(y)}'>"
        "<defs><pattern id='hatch' width='6' height='6' patternUnits='userSpaceOnUse' patternTransform='rotate(45)'>"
        "<rect width='6' height='6' fill='#ffffff'/><line x1='0' y1='0' x2='0' y2='6' stroke='#999' stroke-width='3'/></pattern></defs>"
        f"<rect width='{WIDTH}' height='{_num(y)}' fill='#ffffff'/>"
    )
    return head + "\n".join(c.parts) + "\n</svg>\n"


def _bar(c: _Canvas, b: Bar, lane_top: float) -> None:
    top = lane_top + PAD + b.row * (ROW + GAP)
    colour = c.colours[b.stream]
    mid = top + ROW / 2
    start = b.start if b.start is not None else b.end
    if start > b.queued:
        queued = f"#{b.request_id} {b.stream}: {describe_range(b.range)} queued {start - b.queued:.3f} s"
        if b.start is None:
            queued += f", then cancelled ({b.reason})"
        c.add(
            f"<line {_attrs(class_='queued', data_id=b.request_id, x1=_num(c.x(b.queued)), x2=_num(c.x(start)), y1=_num(mid), y2=_num(mid))}"
            f" stroke='{colour}' stroke-dasharray='2,2'><title>{escape(queued)}</title></line>"
        )
    if b.start is None:
        return  # cancelled before it ran: only its queueing is drawn
    t0 = c.tl.t0
    took = b.end - b.start
    tip = (
        f"#{b.request_id} {b.stream}: {describe_range(b.range)}, {b.bytes:,} B in {took:.3f} s, {b.outcome}"
        + (f" ({b.reason})" if b.reason else "")
        + (f"; first byte after {b.first_byte - b.start:.3f} s" if b.first_byte is not None else "")
        + (f"\n{b.url}" if b.url else "")
    )
    x0, x1 = c.x(b.start), max(c.x(b.end), c.x(b.start) + 1.5)
    attrs = _attrs(
        class_="request",
        data_id=b.request_id,
        data_stream=b.stream,
        data_slot=b.slot,
        data_start=f"{b.start - t0:.6f}",
        data_end=f"{b.end - t0:.6f}",
        data_outcome=b.outcome,
        x=_num(x0),
        y=_num(top),
        width=_num(x1 - x0),
        height=ROW,
    )
    stroke = " stroke='#d62728' stroke-width='2'" if b.outcome == "failed" else ""
    c.add(f"<g><rect {attrs} fill='{colour}' fill-opacity='0.85'{stroke}><title>{escape(tip)}</title></rect>")
    if b.first_byte is not None and b.first_byte > b.start:  # waiting for the headers: paler
        fx = min(c.x(b.first_byte), x1)
        c.add(
            f"<rect x='{_num(x0)}' y='{_num(top)}' width='{_num(fx - x0)}' height='{ROW}' fill='#ffffff' fill-opacity='0.55'/>"
        )
    c.add("</g>")


def _cross(x: float, y: float, r: float, colour: str, width: float) -> str:
    return (
        f"<path d='M{_num(x - r)},{_num(y - r)}L{_num(x + r)},{_num(y + r)}M{_num(x - r)},{_num(y + r)}L{_num(x + r)},{_num(y - r)}'"
        f" stroke='{colour}' stroke-width='{width}'/>"
    )


def _bar_mark(c: _Canvas, m: Mark, top: float) -> None:
    x, y = c.x(m.t), top + ROW / 2
    if m.kind == "cancel":
        colour = CANCEL_COLOURS.get(m.reason, OTHER_CANCEL)
        shape = _cross(x, y, 5, colour, 2.5 if m.reason == "preempted" else 2)
    elif m.kind == "retry":
        shape = f"<circle cx='{_num(x)}' cy='{_num(y)}' r='3.5' fill='#ffffff' stroke='#000'/>"
    else:  # failed
        shape = f"<circle cx='{_num(x)}' cy='{_num(y)}' r='4' fill='#d62728'/>"
    classes = f"mark {m.kind}" + (f" {m.reason}" if m.reason in CANCEL_COLOURS else "")
    c.add(
        f"<g {_attrs(class_=classes, data_id=m.request_id, data_reason=m.reason, data_t=f'{m.t - c.tl.t0:.6f}')}>"
        f"<title>{escape(f'#{m.request_id}: {m.text}')}</title>{shape}</g>"
    )


def _stream_mark(c: _Canvas, m: Mark, lane_top: float, chart_top: float, chart_bottom: float) -> None:
    x = c.x(m.t)
    colour = c.colours.get(m.stream, "#000")
    tri = f"M{_num(x - 5)},{_num(lane_top + 3)}L{_num(x + 5)},{_num(lane_top + 3)}L{_num(x)},{_num(lane_top + 12)}Z"
    c.add(
        f"<g {_attrs(class_=f'mark {m.kind}', data_stream=m.stream, data_t=f'{m.t - c.tl.t0:.6f}')}>"
        f"<title>{escape(f'{m.stream}: {m.text}')}</title>"
        f"<line x1='{_num(x)}' x2='{_num(x)}' y1='{_num(chart_top)}' y2='{_num(chart_bottom)}' stroke='{colour}' stroke-dasharray='5,3'/>"
        f"<path d='{tri}' fill='{colour}'/></g>"
    )


def _axis(c: _Canvas, top: float, bottom: float) -> float:
    step = nice_step(c.span)
    c.add(
        f"<g class='axis'><line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{_num(bottom)}' y2='{_num(bottom)}' stroke='#000'/>"
    )
    for i in range(int(c.span / step) + 1):
        t = i * step
        x = c.x(c.tl.t0 + t)
        label = f"{t:.3f}".rstrip("0").rstrip(".")
        c.add(
            f"<line x1='{_num(x)}' x2='{_num(x)}' y1='{_num(top)}' y2='{_num(bottom + 4)}' stroke='#000' stroke-opacity='0.12'/>"
            f"<text class='tick' x='{_num(x)}' y='{_num(bottom + 16)}' text-anchor='middle' {FONT}>{label}</text>"
        )
    c.add(f"<text x='{LEFT - 14}' y='{_num(bottom + 16)}' text-anchor='end' {FONT}>time (s)</text></g>")
    return bottom + 22


def _legend_items(c: _Canvas) -> Iterator[Tuple[str, str]]:
    """(symbol SVG at the origin, text) pairs."""
    for stream, colour in c.colours.items():
        yield f"<rect x='0' y='-9' width='18' height='10' fill='{colour}'/>", f"request of {stream}"
    yield (
        "<rect x='0' y='-9' width='18' height='10' fill='#888'/><rect x='0' y='-9' width='7' height='10' fill='#fff' fill-opacity='0.55'/>",
        "pale: before the first byte",
    )
    yield "<line x1='0' x2='18' y1='-4' y2='-4' stroke='#555' stroke-dasharray='2,2'/>", "queued"
    yield "<rect x='0' y='-9' width='18' height='10' fill='url(#hatch)' stroke='#555'/>", "reader waits"
    yield "<path d='M4,-9L14,-9L9,0Z' fill='#555'/>", "seek"
    yield _cross(9, -4, 5, CANCEL_COLOURS["epoch"], 2), "epoch cancel (a far seek)"
    yield _cross(9, -4, 5, CANCEL_COLOURS["preempted"], 2.5), "preempted by a High stream"
    yield _cross(9, -4, 5, OTHER_CANCEL, 2), "other cancel (close...)"
    yield "<circle cx='9' cy='-4' r='3.5' fill='#fff' stroke='#000'/>", "retry"


def _legend(c: _Canvas, y: float) -> float:
    x: float = LEFT
    line = y + 12
    c.add("<g class='legend'>")
    for symbol, text in _legend_items(c):
        width = 26 + 6.5 * len(text) + 14
        if x + width > WIDTH - RIGHT:
            x, line = LEFT, line + 18
        c.add(
            f"<g transform='translate({_num(x)},{_num(line)})'>{symbol}<text x='24' y='0' {FONT}>{escape(text)}</text></g>"
        )
        x += width
    c.add("</g>")
    return line + 10


def page(svg: str, title: str) -> str:
    """An HTML page showing the SVG (hover a bar or a mark for its details)."""
    name = html.escape(title or "kithara-io fetch timeline")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{name}</title></head>\n<body style='margin:16px;font-family:sans-serif'>\n"
        f"<p>{name}: hover a bar or a mark for its details.</p>\n{svg}</body></html>\n"
    )
