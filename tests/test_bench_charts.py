"""bench/charts.py: the charts show the results they are drawn from.

Drawn from the benchmark's committed full run (bench/results/*.json) and parsed back: one
summary bar per row with a floor, its length the row's relative performance, its colour the
row's verdict; per case one bar per client with a value.
"""

from __future__ import annotations

import importlib.util
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def _charts():
    spec = importlib.util.spec_from_file_location("bench_charts", REPO / "bench" / "charts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


charts = _charts()


def bars(path: Path):
    root = ET.parse(path).getroot()
    return [el for el in root.iter() if el.get("class") == "bar"]


def test_directions_and_targets_read_from_the_rows() -> None:
    def row(metric, values, target=""):
        return {"case": "c", "metric": metric, "values": values, "target": target}

    seq = row("read(1 MiB) of 200 MB, MB/s", {"kithara-io": 1000.0, "floor": 4000.0}, ">= 0.5x floor (aim 0.7x)")
    assert charts.higher_is_better(seq) and charts.relative(seq, "kithara-io") == 0.25
    assert charts.target_relative(seq) == 0.5
    rnd = row("500x seek + read(64 KiB), ms per read", {"kithara-io": 0.8, "floor": 0.4}, "<= 1.6x floor")
    assert not charts.higher_is_better(rnd) and charts.relative(rnd, "kithara-io") == 0.5
    assert charts.target_relative(rnd) == pytest.approx(1 / 1.6)
    seek = row("seek -> first 4 KiB, ms: median / worst of 8", {"kithara-io": "61 / 66", "floor": "50 / 54"}, "~1 RTT (<= 75 ms)")
    assert charts.relative(seek, "kithara-io") == pytest.approx(50 / 61)
    assert charts.target_relative(seek) == pytest.approx(50 / 75)
    info = row("aggregate MB/s", {"kithara-io": 100.0, "floor": 200.0}, "(no target; case 1: >= 0.5x)")
    assert charts.target_relative(info) is None
    assert charts.relative(row("fsspec time / kithara-io time", {"kithara-io": 5.2}), "kithara-io") is None


def test_charts_drawn_from_the_committed_results(tmp_path: Path) -> None:
    written = charts.write_charts(RESULTS, tmp_path)
    payloads = charts.load(RESULTS)
    rows = [r for p in payloads for r in p["rows"] if charts.relative(r, "kithara-io") is not None]
    summary = bars(tmp_path / "bench-summary.svg")
    assert len(summary) == len(rows) > 10
    colours = {True: charts.VERDICT[True], False: charts.VERDICT[False], None: charts.VERDICT[None]}
    lengths = []
    for bar, r in zip(summary, rows):
        rel = charts.relative(r, "kithara-io")
        assert float(bar.get("data-relative")) == pytest.approx(rel, rel=1e-5)
        assert bar.get("fill") == colours[r.get("passed")]
        lengths.append((rel, float(bar.get("width"))))
    lengths.sort()
    assert [w for _, w in lengths] == sorted(w for _, w in lengths)  # longer = better
    (r0, w0), (r1, w1) = lengths[0], lengths[-1]
    if r1 > r0 and w0 > 1:  # log scale: width - 0 at the axis' low end grows with log(relative)
        scale = (w1 - w0) / (math.log10(r1) - math.log10(r0))
        for r, w in lengths:
            assert w == pytest.approx(w0 + (math.log10(r) - math.log10(r0)) * scale, abs=0.2)
    for p in payloads:
        path = tmp_path / f"bench-{p['case']}.svg"
        expected = sum(1 for r in p["rows"] for c in charts.CLIENTS if charts.relative(r, c) is not None)
        if expected:
            assert path in written and len(bars(path)) == expected
