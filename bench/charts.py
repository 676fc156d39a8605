#!/usr/bin/env python3
"""The benchmark's results as charts: docs/img/bench-*.svg, drawn from bench/results/*.json.

    python bench/charts.py                           # from bench/results (run by `make bench`)
    python bench/charts.py --results bench/results/quick --out /tmp/charts

``bench-summary.svg``: for every row with a target, kithara-io's performance relative to the
floor (the plain client doing the minimum: 1.0 = as good as it), the target as a tick, the
bar green where the target is met, red where not, grey where the row has no target.
``bench-<case>.svg``: per case, kithara-io, obstore, fsspec and smart_open relative to the floor
on a log scale (1 = the floor, right = better), each bar labelled with the measured value.

"Relative performance" turns every metric the same way round: value / floor for rates
(MB/s, x realtime), floor / value for costs (ms, CPU seconds, MB of memory, bytes fetched per
byte): the bar is longer when the client does better. The SVG is written by hand (the charts
are bars and text; no plotting library is a dependency of the project).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional
from xml.sax.saxutils import escape

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CLIENTS = ("kithara-io", "obstore", "fsspec", "smart_open")
COLOURS = {"kithara-io": "#1f77b4", "obstore": "#9467bd", "fsspec": "#ff7f0e", "smart_open": "#2ca02c"}
VERDICT = {True: "#2ca02c", False: "#d62728", None: "#9e9e9e"}
FONT = "font-family='DejaVu Sans, Verdana, sans-serif' font-size='11'"
SMALL = "font-family='DejaVu Sans, Verdana, sans-serif' font-size='9.5'"
TITLE_FONT = "font-family='DejaVu Sans, Verdana, sans-serif' font-size='14'"
WIDTH, LEFT, RIGHT = 1000, 430, 110
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


# -- reading the rows (pure) --------------------------------------------------------------------
def number(value: Any) -> Optional[float]:
    """A cell's value: a number, or the first number of a text like ``"61 / 66"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        m = _NUMBER.search(value)
        return float(m.group()) if m else None
    return None


def higher_is_better(row: Dict[str, Any]) -> bool:
    """Rates are better high, costs (time, CPU, memory, bytes fetched) low."""
    if row.get("higher_better") is not None:
        return bool(row["higher_better"])
    metric = row.get("metric", "").lower()
    return any(word in metric for word in ("mb/s", "x realtime", "/ kithara-io time"))


def relative(row: Dict[str, Any], client: str) -> Optional[float]:
    """``client``'s performance relative to the floor (> 1: better than the floor)."""
    value, floor = number(row.get("values", {}).get(client)), number(row.get("values", {}).get("floor"))
    if value is None or floor is None or value <= 0 or floor <= 0:
        return None
    return value / floor if higher_is_better(row) else floor / value


def target_relative(row: Dict[str, Any]) -> Optional[float]:
    """The target as a relative performance, where the target text allows it:
    ``>= 0.5x floor``, ``<= 1.6x floor``, or a bound in the metric's unit (``<= 75 ms``,
    ``= 151 ms``, ``<= 1.05``, ``= 117 MB``)."""
    text = str(row.get("target") or "")
    floor = number(row.get("values", {}).get("floor"))
    m = re.search(r"([<>]=)\s*([\d.]+)x floor", text)
    if m:
        bound = float(m.group(2))
        return bound if higher_is_better(row) else (1 / bound if bound else None)
    if floor is None or floor <= 0 or "no target" in text or "reference" in text or "information" in text:
        return None
    m = re.search(r"(?:<=|=)\s*([\d.]+)\s*(?:ms|MB)?\)?\s*$", text)
    if m and not higher_is_better(row):
        bound = float(m.group(1))
        return floor / bound if bound > 0 else None
    return None


def load(results: Path) -> List[Dict[str, Any]]:
    """The payloads of ``results/*.json``, in the benchmark's case order where known."""
    payloads = []
    for path in sorted(results.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
            payloads.append(payload)
    rank = {name: i for i, name in enumerate(case_order())}
    return sorted(payloads, key=lambda p: (rank.get(p.get("case"), 99), p.get("case", "")))


def case_order() -> List[str]:
    """``cases.ORDER``, read without importing the cases (and what they import)."""
    try:
        tree = ast.parse((BENCH / "cases" / "__init__.py").read_text())
    except (OSError, SyntaxError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ORDER" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def run_note(payloads: List[Dict[str, Any]]) -> str:
    """When and how the numbers were measured, and whether the machine was busy."""
    dates = sorted({str(p.get("started", ""))[:10] for p in payloads if p.get("started")})
    quick = any(p.get("quick") for p in payloads)
    busy = max((p.get("foreign_cores") or 0.0 for p in payloads), default=0.0)
    cores = (payloads[0].get("machine") or {}).get("cores") if payloads else None
    parts = [f"run of {', '.join(dates) or 'unknown date'}"]
    if quick:
        parts.append("--quick (smaller files, 1 repeat)")
    if cores:
        parts.append(f"{cores} cores shared by client and server")
    if busy > 0.25:
        parts.append(f"other processes used up to {busy:.1f} cores: numbers not representative")
    return "; ".join(parts)


# -- drawing ------------------------------------------------------------------------------------
def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _fmt(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.0f}x"


class LogScale:
    """Relative performance -> x, on a log axis that always shows 1 (the floor)."""

    def __init__(self, values: Iterable[float], x0: float, x1: float) -> None:
        vals = [v for v in values if v and v > 0] + [1.0]
        self.lo = 10 ** math.floor(math.log10(min(vals)) + 1e-9)
        self.hi = 10 ** math.ceil(math.log10(max(vals)) - 1e-9)
        if self.hi <= self.lo:
            self.hi = self.lo * 10
        self.x0, self.x1 = x0, x1

    def x(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        span = math.log10(self.hi) - math.log10(self.lo)
        return self.x0 + (math.log10(v) - math.log10(self.lo)) / span * (self.x1 - self.x0)

    def ticks(self) -> List[float]:
        out, v = [], self.lo
        while v <= self.hi * 1.0001:
            for m in (1, 2, 5):
                if self.lo <= v * m <= self.hi * 1.0001:
                    out.append(v * m)
            v *= 10
        return out


def _axis(scale: LogScale, top: float, bottom: float) -> List[str]:
    parts = []
    for t in scale.ticks():
        x = scale.x(t)
        strong = abs(t - 1) < 1e-9
        dash = " stroke-dasharray='4,3'" if strong else ""
        parts.append(
            f"<line x1='{_num(x)}' x2='{_num(x)}' y1='{_num(top)}' y2='{_num(bottom)}' stroke='#000' "
            f"stroke-opacity='{0.6 if strong else 0.12}'{dash}/>"
            f"<text class='tick' x='{_num(x)}' y='{_num(bottom + 14)}' text-anchor='middle' {FONT}>{t:g}</text>"
        )
    parts.append(
        f"<text x='{_num((scale.x0 + scale.x1) / 2)}' y='{_num(bottom + 30)}' text-anchor='middle' {FONT}>"
        "relative to the floor (1 = the floor; right = better; log scale)</text>"
    )
    return parts


def _document(parts: List[str], height: float) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{_num(height)}' viewBox='0 0 {WIDTH} {_num(height)}'>"
        f"<rect width='{WIDTH}' height='{_num(height)}' fill='#ffffff'/>\n" + "\n".join(parts) + "\n</svg>\n"
    )


def summary_svg(payloads: List[Dict[str, Any]]) -> str:
    rows = [r for p in payloads for r in p["rows"] if relative(r, "kithara-io") is not None]
    bar, gap = 14, 6
    top = 52
    values = [relative(r, "kithara-io") or 1 for r in rows] + [t for t in map(target_relative, rows) if t]
    scale = LogScale(values, LEFT, WIDTH - RIGHT)
    bottom = top + len(rows) * (bar + gap)
    parts = [
        f"<text x='10' y='20' font-weight='bold' {TITLE_FONT}>kithara-io against the floor and its targets</text>",
        f"<text x='10' y='38' {FONT} fill='#555'>{escape(run_note(payloads))}</text>",
    ]
    parts += _axis(scale, top - 4, bottom)
    for i, r in enumerate(rows):
        y = top + i * (bar + gap)
        rel = relative(r, "kithara-io") or 1.0
        passed = r.get("passed")
        verdict = {True: "met", False: "not met", None: "no target"}[passed]
        label = f"{r['case']}: {r['metric']}"
        x1 = scale.x(rel)
        tip = f"{label}\nkithara-io {r['cells'].get('kithara-io', '')}, floor {r['cells'].get('floor', '')}; target {r.get('target')}: {verdict}"
        parts.append(f"<text x='{LEFT - 8}' y='{_num(y + 11)}' text-anchor='end' {FONT}>{escape(_short(label, 70))}</text>")
        parts.append(
            f"<rect class='bar' data-case={json.dumps(r['case'])} data-passed='{passed}' data-relative='{rel:.6g}' x='{LEFT}' "
            f"y='{_num(y)}' width='{_num(max(x1 - LEFT, 1))}' height='{bar}' fill='{VERDICT[passed]}'><title>{escape(tip)}</title></rect>"
        )
        parts.append(f"<text x='{_num(max(x1, LEFT) + 4)}' y='{_num(y + 11)}' {FONT}>{_fmt(rel)}</text>")
        target = target_relative(r)
        if target:
            tx = scale.x(target)
            parts.append(
                f"<path class='target' d='M{_num(tx)},{_num(y - 2)}V{_num(y + bar + 2)}' stroke='#000' stroke-width='2.5'>"
                f"<title>target: {escape(str(r.get('target')))}</title></path>"
            )
    legend = bottom + 44
    items = [(VERDICT[True], "target met"), (VERDICT[False], "target not met"), (VERDICT[None], "no target (reported)")]
    x = LEFT
    for colour, text in items:
        parts.append(f"<rect x='{x}' y='{_num(legend - 9)}' width='16' height='10' fill='{colour}'/><text x='{x + 22}' y='{_num(legend)}' {FONT}>{text}</text>")
        x += 150
    parts.append(f"<path d='M{x + 8},{_num(legend - 11)}V{_num(legend + 2)}' stroke='#000' stroke-width='2.5'/><text x='{x + 16}' y='{_num(legend)}' {FONT}>the target</text>")
    return _document(parts, legend + 12)


def case_svg(payload: Dict[str, Any]) -> Optional[str]:
    rows = [r for r in payload["rows"] if any(relative(r, c) is not None for c in CLIENTS)]
    if not rows:
        return None
    bar, gap, group_gap = 11, 2, 14
    top = 52
    values = [relative(r, c) for r in rows for c in CLIENTS]
    scale = LogScale([v for v in values if v], LEFT, WIDTH - RIGHT)
    y = top
    body: List[str] = []
    for r in rows:
        clients = [c for c in CLIENTS if c in r.get("values", {})]
        height = len(clients) * (bar + gap)
        body.append(f"<text x='{LEFT - 8}' y='{_num(y + height / 2 + 4)}' text-anchor='end' {FONT}>{escape(_short(r['metric'], 68))}</text>")
        for c in clients:
            rel = relative(r, c)
            cell = str(r.get("cells", {}).get(c, ""))
            if rel is None:
                body.append(f"<text x='{LEFT + 4}' y='{_num(y + 9)}' {FONT} fill='#777'>{escape(c)}: {escape(cell) or 'n/a'}</text>")
            else:
                x1 = scale.x(rel)
                tip = f"{c}: {cell} ({_fmt(rel)} the floor's {r['cells'].get('floor', '')})"
                body.append(
                    f"<rect class='bar' data-client='{c}' data-relative='{rel:.6g}' x='{LEFT}' y='{_num(y)}' "
                    f"width='{_num(max(x1 - LEFT, 1))}' height='{bar}' fill='{COLOURS[c]}'><title>{escape(tip)}</title></rect>"
                    f"<text x='{_num(max(x1, LEFT) + 4)}' y='{_num(y + 9)}' {SMALL}>{escape(cell)}</text>"
                )
            y += bar + gap
        y += group_gap
    bottom = y - group_gap + 4
    parts = [
        f"<text x='10' y='20' font-weight='bold' {TITLE_FONT}>{escape(payload.get('title', payload.get('case', '')))}</text>",
        f"<text x='10' y='38' {FONT} fill='#555'>{escape(run_note([payload]))}</text>",
    ]
    parts += _axis(scale, top - 4, bottom) + body
    legend = bottom + 48
    x = LEFT
    for c in CLIENTS:
        parts.append(f"<rect x='{x}' y='{_num(legend - 9)}' width='16' height='10' fill='{COLOURS[c]}'/><text x='{x + 22}' y='{_num(legend)}' {FONT}>{c}</text>")
        x += 110
    return _document(parts, legend + 12)


def write_charts(results: Path, out: Path) -> List[Path]:
    """Draw every chart of ``results`` into ``out``; returns the files written."""
    payloads = load(results)
    if not payloads:
        raise SystemExit(f"no benchmark results in {results} (run bench/run.py first)")
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "bench-summary.svg"]
    written[0].write_text(summary_svg(payloads))
    for payload in payloads:
        text = case_svg(payload)
        if text is not None:
            path = out / f"bench-{payload['case']}.svg"
            path.write_text(text)
            written.append(path)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(BENCH / "results"), help="directory of <case>.json (default: bench/results)")
    ap.add_argument("--out", default=str(REPO / "docs" / "img"), help="where the SVGs go (default: docs/img)")
    args = ap.parse_args(argv)
    for path in write_charts(Path(args.results), Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

