"""Every benchmark in one run, then one summary table: ``python -m bench`` (about 4½ minutes on 2 cores).

Each figure is set against a baseline measured in the same run, on the same machine:
- intake throughput (auto-approve, review with the card in Slack) vs a bare aiohttp handler
  doing one SQLite insert per request (and on PostgreSQL, when ``COUNTERSIGN_BENCH_POSTGRES_URL``
  names a server, vs one asyncpg insert);
- request -> card and click -> agent latency at a steady 100 req/s vs the same paths done by
  a bare handler (one insert and one Slack call);
- deadline lateness with 100k requests pending vs bare asyncio timers, and the process RSS;
- audit verify over 1M events vs a bare streamed SELECT of the same chain;
- a 1,000-request burst into one channel under a per-channel posting limit vs the least time
  the limit allows (zero lost).
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import audit, burst, deadlines, intake


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def loop_figures(rate: int, seconds: int) -> dict[str, tuple[float, float]]:
    """Run bench.loop in its own process (its own event loop and CPU) and read its table."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bench.loop", "--rate", str(rate), "--seconds", str(seconds), "--floor-seconds", "2"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    print(out.strip())
    figures = {}
    for name in ("request -> card", "floor: POST", "click -> agent", "floor: signed"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        numbers = re.findall(r"\d+\.\d+", line)
        figures[name] = (float(numbers[0]), float(numbers[1]))
    return figures


def main() -> None:
    started = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []

    section("intake throughput")
    measured = asyncio.run(intake.run(1000, 32, os.environ.get(intake.POSTGRES_ENV)))
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

    section("approval loop latency at 100 req/s")
    loop = loop_figures(100, 5)
    for path, base in (("request -> card", "floor: POST"), ("click -> agent", "floor: signed")):
        (p50, p99), (b50, b99) = loop[path], loop[base]
        rows.append((f"{path} p50 / p99", f"{p50:.0f} / {p99:.0f} ms", f"{b50:.1f} / {b99:.1f} ms", f"{p99 / b99:.0f}"))

    section("deadline lateness, 100k pending")
    late = asyncio.run(deadlines.run(100_000, 2_000, 20.0))
    rows.append((
        "deadline lateness p50 / p99", f"{late['p50_ms']:.0f} / {late['p99_ms']:.0f} ms",
        f"{late['base_p50_ms']:.1f} / {late['base_p99_ms']:.1f} ms", f"{late['p99_ms'] / late['base_p99_ms']:.0f}",
    ))  # fmt: skip
    rows.append(("process max RSS (100k pending)", f"{late['rss_mb']:.0f} MiB", "", ""))

    section("audit chain, 1M events")
    with tempfile.TemporaryDirectory(prefix="cs-audit-") as tmp:
        chain = asyncio.run(audit.run(f"sqlite+aiosqlite:///{Path(tmp) / 'audit.db'}", 1_000_000, 1000))
    for name, n, seconds in chain:
        print(f"| {name:<44} | {n:>9,} | {seconds:>7.2f} s |")
    select_s = next(s for name, _, s in chain if name.startswith("baseline: bare streamed SELECT"))
    verify_s = next(s for name, _, s in chain if name.startswith("verify"))
    rows.append(("audit verify, 1M events", f"{verify_s:.1f} s", f"{select_s:.1f} s", f"{verify_s / select_s:.2f}"))

    section("burst of 1,000 into one channel")
    b = asyncio.run(burst.run(1000, 50))
    rows.append(
        (
            f"burst 1,000 cards (lost: {b['lost']:.0f})",
            f"{b['seconds']:.1f} s",
            f"{b['floor']:.1f} s",
            f"{b['seconds'] / b['floor']:.2f}",
        )
    )

    cpus = os.cpu_count()
    print(f"\n=== summary: {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}, SQLite ===")
    print(f"| {'figure':<34} | {'countersign':>20} | {'baseline (same run)':>20} | {'ratio':>6} |")
    print(f"|{'-' * 36}|{'-' * 22}|{'-' * 22}|{'-' * 8}|")
    for figure, value, base, ratio_text in rows:
        print(f"| {figure:<34} | {value:>20} | {base:>20} | {ratio_text:>6} |")
    print(f"\nall benchmarks: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
