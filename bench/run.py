#!/usr/bin/env python3
"""kithara-io benchmark: kithara-io vs fsspec vs smart_open vs the raw floor, one table.

    python bench/run.py                 # every case (~12 min), results in bench/results/
    python bench/run.py --quick         # smaller files, 1 repeat (results in bench/results/quick/)
    python bench/run.py --only seq,random
    python bench/run.py --update-readme # also put the table into docs/benchmarks.md

Each case runs in its own child process (its own process group, so a timeout or Ctrl-C kills
it together with the nginx it started), against servers it starts itself on 127.0.0.1; the
throttled case runs in a private network namespace whose loopback is shaped with ``tc``. Test
files are generated into one temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import _common  # noqa: E402  (puts the repository on sys.path)
from _common import Context, machine_info, machine_line, markdown_table, write_result  # noqa: E402
from _servers import can_shape_in_netns, terminate_group  # noqa: E402
from cases import ORDER  # noqa: E402

README = _common.REPO / "docs" / "benchmarks.md"  # the table's page (was README.md)
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
FOREIGN_WARN = 0.25  # cores used by other processes during a case that taint its numbers


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):  # noqa: ARG001
    raise _Terminated()


def _child_on_signal(signum, frame):  # noqa: ARG001
    from _servers import stop_all

    stop_all()  # first: the exception below may be swallowed inside a decoder callback
    raise _Terminated()


# -- child: one case ---------------------------------------------------------------------------
def run_child(name: str, data: Path, quick: bool, results: Path) -> int:
    signal.signal(signal.SIGTERM, _child_on_signal)
    _common.RESULTS_DIR = results
    module = importlib.import_module(f"cases.{name}")
    ctx = Context(data, quick)
    started = time.time()
    payload: Dict[str, Any] = {"case": name, "title": module.TITLE, "quick": quick}
    try:
        out = module.run(ctx)
    except _Terminated:
        print(f"case {name}: terminated", file=sys.stderr)
        return 143
    payload.update(out)
    payload["started"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started))
    payload["seconds"] = round(time.time() - started, 1)
    payload["machine"] = machine_info()
    write_result(name, payload)
    return 0


# -- parent ------------------------------------------------------------------------------------
def _child_command(name: str, data: Path, quick: bool, results: Path) -> tuple:
    """The child's command line; a case whose module sets ``NETNS = True`` runs in a private
    network namespace (``unshare --net``), when this is root with ``unshare`` and ``tc``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--data", str(data),
           "--results", str(results)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if getattr(importlib.import_module(f"cases.{name}"), "NETNS", False) and can_shape_in_netns():
        cmd = ["unshare", "--net", "--"] + cmd
        env["KITHARA_BENCH_NETNS"] = "1"
    return cmd, env


def _busy_seconds() -> Optional[float]:
    """CPU seconds spent by all processes of the machine (user + nice + system)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        return (int(fields[0]) + int(fields[1]) + int(fields[2])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _our_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_case(name: str, data: Path, quick: bool, results: Path) -> Optional[Dict[str, Any]]:
    module = importlib.import_module(f"cases.{name}")
    timeout = module.TIMEOUT
    print(f"== {module.TITLE} (timeout {timeout}s)", file=sys.stderr, flush=True)
    stale = results / f"{name}.json"
    if stale.exists():
        stale.unlink()
    cmd, env = _child_command(name, data, quick, results)
    started = time.monotonic()
    busy0, ours0 = _busy_seconds(), _our_seconds()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, cwd=str(_common.REPO))
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"!! case {name} timed out after {timeout}s; stopping it", file=sys.stderr)
        terminate_group(proc)
        return None
    finally:
        if proc.poll() is None:  # Ctrl-C or an error in the parent
            terminate_group(proc)
    wall = time.monotonic() - started
    # CPU used meanwhile by processes that are not this benchmark (other jobs on the machine)
    busy1, ours1 = _busy_seconds(), _our_seconds()
    foreign = None
    if busy0 is not None and busy1 is not None and wall > 0:
        foreign = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / wall
    note = f", other processes used {foreign:.2f} cores meanwhile" if foreign is not None else ""
    print(f"   {name}: exit {rc} after {wall:.0f}s{note}", file=sys.stderr, flush=True)
    if rc != 0 or not stale.exists():
        return None
    payload = json.loads(stale.read_text())
    payload["foreign_cores"] = foreign
    _write(stale, payload)
    return payload


def _write(path: Path, payload: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def render(payloads: List[Dict[str, Any]], failed: List[str], machine: Dict[str, Any], quick: bool) -> str:
    rows = [r for p in payloads for r in p["rows"]]
    when = time.strftime("%Y-%m-%d")
    lines = [
        f"Run of {when}{' (--quick: smaller files, 1 repeat)' if quick else ''} on: {machine_line(machine)}",
        "",
        markdown_table(rows),
    ]
    if failed:
        lines += ["", "Cases that did not complete: " + ", ".join(failed)]
    contended = [
        f"{p['title']} ({p['foreign_cores']:.2f} cores)"
        for p in payloads
        if (p.get("foreign_cores") or 0) > FOREIGN_WARN
    ]
    if contended:
        lines += ["", "**Warning**: other processes were using CPU during: " + ", ".join(contended)
                  + "; those numbers are not representative of this machine."]
    notes = [p["model"] for p in payloads if p.get("model")]
    if notes:
        lines += ["", "Set-up per case:"] + [f"- {p['title']}: {p['model']}" for p in payloads if p.get("model")]
    return "\n".join(lines) + "\n"


def update_readme(table_md: str) -> bool:
    text = README.read_text()
    if START not in text or END not in text:
        print(f"{README} has no {START} ... {END} block; not updated", file=sys.stderr)
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(head + START + "\n" + table_md + END + tail)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller files and one repeat (development)")
    ap.add_argument("--only", help="comma-separated case names: " + ", ".join(ORDER))
    ap.add_argument("--list", action="store_true", help="list the cases")
    ap.add_argument("--update-readme", action="store_true", help="write the table into docs/benchmarks.md")
    ap.add_argument("--keep-data", help="use (and keep) this directory for the generated files")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        return run_child(args.child, Path(args.data), args.quick, Path(args.results))
    if args.list:
        for name in ORDER:
            print(f"{name:22s} {importlib.import_module(f'cases.{name}').TITLE}")
        return 0
    names = ORDER if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; choose from {ORDER}")

    results = _common.RESULTS_DIR / ("quick" if args.quick else "")
    results.mkdir(parents=True, exist_ok=True)
    if args.keep_data:
        data = Path(args.keep_data)
        data.mkdir(parents=True, exist_ok=True)
    else:
        data = Path(tempfile.mkdtemp(prefix="kithara-bench-data-"))
    signal.signal(signal.SIGTERM, _on_sigterm)
    payloads, failed = [], []
    started = time.monotonic()
    try:
        for name in names:
            payload = run_case(name, data, args.quick, results)
            if payload is None:
                failed.append(name)
            else:
                payloads.append(payload)
    except (KeyboardInterrupt, _Terminated):
        print("\ninterrupted: servers and children stopped", file=sys.stderr)
        return 130
    finally:
        if not args.keep_data:
            shutil.rmtree(data, ignore_errors=True)
    machine = machine_info()
    table_md = render(payloads, failed, machine, args.quick)
    print()
    print(table_md)
    print(f"(total {time.monotonic() - started:.0f}s; JSON per case in {results})")
    if not args.only:
        (results / "latest.md").write_text(table_md)
    if args.update_readme:
        if args.quick or args.only:
            print("--update-readme needs a full run (no --quick/--only); docs/benchmarks.md not updated", file=sys.stderr)
        elif update_readme(table_md):
            print("docs/benchmarks.md updated", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
