"""Every benchmark in one run, then one summary table: ``python -m bench [--quick] [--only NAME,...]``.

The full run takes about 7 minutes on 2 cores; ``--quick`` (smaller sizes, shorter windows, no
failover) about 2. Each figure is set against a baseline measured in the same run, on the same machine:

- intake: intake throughput (auto-approve, review with the card in Slack) vs a bare aiohttp handler
  doing one SQLite insert per request (and on PostgreSQL vs one asyncpg insert);
- loop: request -> card and click -> agent latency at a steady 100 req/s vs the same paths done by
  a bare handler (one insert and one Slack call), and the service's peak RSS;
- replicas (PostgreSQL only): two ``countersign serve`` processes vs one on one database, and a
  replica killed mid-burst (the failover table);
- deadlines: deadline lateness with 100k requests pending vs bare asyncio timers, and the process RSS;
- audit: audit verify over 1M events vs a bare streamed SELECT of the same chain;
- burst: 1,000 requests into one channel under a per-channel posting limit vs the least time the
  limit allows (zero lost).

PostgreSQL: ``--postgres URL`` or ``COUNTERSIGN_BENCH_POSTGRES_URL`` (a server URL; each benchmark makes a
database of its own and drops it). Without it, intake runs on SQLite only and replicas is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import audit, burst, deadlines, intake

Row = tuple[str, str, str, str]  # figure, countersign, baseline (same run), ratio


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def module(name: str, *args: str) -> str:
    """``python -m bench.NAME ARGS`` in a process of its own (its own event loop and CPU); its output."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", f"bench.{name}", *args], capture_output=True, text=True, check=False
    ).stdout  # fmt: skip
    print(out.strip(), flush=True)
    return out


def run_intake(quick: bool, postgres: str | None) -> list[Row]:
    rows: list[Row] = []
    measured = asyncio.run(intake.run(300 if quick else 1000, 32, postgres))
    print(intake.table(measured))
    floor = measured[0].rate
    for r in measured[1:]:
        if r.name.startswith("floor"):
            floor = r.rate
            continue
        pg = r.name.startswith("countersign on PostgreSQL")
        name = r.name.split(": ", 1)[1] + (", PG" if pg else "")
        rows.append((f"intake, {name}", f"{r.rate:.0f} req/s", f"{floor:.0f} req/s", f"{r.ratio:.2f}"))
    with tempfile.TemporaryDirectory(prefix="cs-cost-") as tmp:
        orm, bare = asyncio.run(intake.statement_cost(Path(tmp)))
    print(f"one SELECT 1: {orm:.0f} us through SQLAlchemy's asyncio adapter, {bare:.0f} us on bare aiosqlite")
    rows.append(("one SQL statement (SELECT 1)", f"{orm:.0f} us", f"{bare:.0f} us (aiosqlite)", f"{orm / bare:.1f}"))
    return rows


def run_loop(quick: bool, postgres: str | None) -> list[Row]:
    seconds, floor_seconds = ("3", "1") if quick else ("10", "3")
    out = module("loop", "--rate", "100", "--seconds", seconds, "--floor-seconds", floor_seconds)
    figures = {}
    for name in ("request -> card", "floor: POST", "click -> agent", "floor: signed"):
        line = next((line for line in out.splitlines() if line.startswith(name)), "")
        numbers = re.findall(r"\d+\.\d+", line)
        figures[name] = (float(numbers[0]), float(numbers[1])) if len(numbers) >= 2 else (float("nan"),) * 2
    rows: list[Row] = []
    for path, base in (("request -> card", "floor: POST"), ("click -> agent", "floor: signed")):
        (p50, p99), (b50, b99) = figures[path], figures[base]
        rows.append((f"{path} p50 / p99", f"{p50:.0f} / {p99:.0f} ms", f"{b50:.1f} / {b99:.1f} ms", f"{p99 / b99:.0f}"))
    if found := re.search(r"max RSS of the service: (\d+) MiB", out):
        rows.append(("service max RSS (loop at 100 req/s)", f"{found.group(1)} MiB", "", ""))
    return rows


def run_replicas(quick: bool, postgres: str | None) -> list[Row]:
    if not postgres:
        print("skipped: no PostgreSQL (--postgres or COUNTERSIGN_BENCH_POSTGRES_URL)")
        return []
    out = module("replicas", "--postgres", postgres, *(["--quick", "--no-failover"] if quick else []))
    rows: list[Row] = []
    one: dict[str, str] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[1] in ("1", "2") and not cells[0].startswith("floor"):
            if cells[1] == "1":
                one[cells[0]] = cells[2]
            else:
                rows.append(
                    (
                        f"2 replicas, {cells[0].split(': ', 1)[1]}",
                        f"{cells[2]} req/s",
                        f"{one.get(cells[0])} req/s (1)",
                        cells[3],
                    )
                )
        elif len(cells) == 4 and cells[3] in ("met", "NOT MET"):
            rows.append((f"failover: {cells[0]}", cells[1], cells[2], cells[3]))
    return rows


def run_deadlines(quick: bool, postgres: str | None) -> list[Row]:
    late = asyncio.run(deadlines.run(10_000, 500, 5.0) if quick else deadlines.run(100_000, 2_000, 20.0))
    pending = "10k" if quick else "100k"
    return [
        (
            "deadline lateness p50 / p99",
            f"{late['p50_ms']:.0f} / {late['p99_ms']:.0f} ms",
            f"{late['base_p50_ms']:.1f} / {late['base_p99_ms']:.1f} ms",
            f"{late['p99_ms'] / late['base_p99_ms']:.0f}",
        ),
        (f"process max RSS ({pending} pending)", f"{late['rss_mb']:.0f} MiB", "", ""),
    ]


def run_audit(quick: bool, postgres: str | None) -> list[Row]:
    events = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="cs-audit-") as tmp:
        chain = asyncio.run(audit.run(f"sqlite+aiosqlite:///{Path(tmp) / 'audit.db'}", events, 1000))
    for name, n, seconds in chain:
        print(f"| {name:<44} | {n:>9,} | {seconds:>7.2f} s |")
    select_s = next(s for name, _, s in chain if name.startswith("baseline: bare streamed SELECT"))
    verify_s = next(s for name, _, s in chain if name.startswith("verify"))
    return [
        (f"audit verify, {events:,} events", f"{verify_s:.1f} s", f"{select_s:.1f} s", f"{verify_s / select_s:.2f}")
    ]


def run_burst(quick: bool, postgres: str | None) -> list[Row]:
    b = asyncio.run(burst.run(200 if quick else 1000, 50))
    n = 200 if quick else 1000
    return [
        (
            f"burst {n:,} cards (lost: {b['lost']:.0f})",
            f"{b['seconds']:.1f} s",
            f"{b['floor']:.1f} s",
            f"{b['seconds'] / b['floor']:.2f}",
        )
    ]


# name -> (title, runner): the order they run in.
BENCHES: dict[str, tuple[str, Callable[[bool, str | None], list[Row]]]] = {
    "intake": ("intake throughput", run_intake),
    "loop": ("approval loop latency at 100 req/s", run_loop),
    "replicas": ("replicas on one PostgreSQL, and failover", run_replicas),
    "deadlines": ("deadline lateness", run_deadlines),
    "audit": ("audit chain", run_audit),
    "burst": ("burst into one channel", run_burst),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter windows (about 2 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(BENCHES)}")
    parser.add_argument("--postgres", default=os.environ.get(intake.POSTGRES_ENV), help="a PostgreSQL server URL")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    unknown = [n for n in chosen if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.perf_counter()
    rows: list[Row] = []
    for name in chosen:
        title, runner = BENCHES[name]
        section(title)
        rows += runner(args.quick, args.postgres)

    cpus = os.cpu_count()
    mode = "quick" if args.quick else "full"
    print(f"\n=== summary ({mode}): {platform.machine()}, {cpus} CPUs, Python {platform.python_version()} ===")
    print(f"| {'figure':<46} | {'countersign':>22} | {'baseline (same run)':>22} | {'ratio':>8} |")
    print(f"|{'-' * 48}|{'-' * 24}|{'-' * 24}|{'-' * 10}|")
    for figure, value, base, ratio_text in rows:
        print(f"| {figure:<46} | {value:>22} | {base:>22} | {ratio_text:>8} |")
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
