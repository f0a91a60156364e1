"""Replicas on one PostgreSQL: does a second ``countersign serve`` add intake, and does killing one lose anything?

    python -m bench.replicas [--postgres URL] [--seconds 6] [--concurrency 64] [--quick]

Everything runs against one PostgreSQL server, in a new database per configuration (dropped
afterwards). The Slack emulator and the load generator run in this process; every service is a
real ``countersign serve`` subprocess, configured through its environment as in production.

1. Scaling. The same closed-loop load generator (``--concurrency`` clients, each sending its next
   request when the last is answered, round-robin over the replicas' URLs) drives one replica,
   then two on one database, for ``--seconds`` each:

   * auto-approved requests (answered by the API);
   * review requests, the clock stopping when the last card is in the emulator's channel.

   Baseline in the same run: the bare floor server (``bench.floor``: aiohttp + one asyncpg INSERT)
   as one process and as two, which shows how much a second process can add on this machine at all.
   Each row prints the CPU each process used, so what limits the ratio is visible.

2. Failover (``bench.failover``): two replicas, a burst of review requests with reviewers clicking
   the cards as they appear; mid-burst one replica is killed with SIGKILL. Printed, not asserted:
   when the cards of the outbox items the dead replica had claimed appear (target: within 15 s),
   duplicate cards and thread notes (target: none), and acknowledged clicks not counted (none).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url

from bench import failover
from bench.intake import POSTGRES_ENV, postgres_database
from bench.pgwaits import PgWaits
from bench.procs import CpuMeter, Proc, free_port, process, services
from bench.stack import bench_manifests
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import running_emulator

DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
CHANNEL = "C0SUPPORT1"
FLOOR = "floor: bare aiohttp + 1 asyncpg INSERT"
REFUND = {"currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111"}


@dataclass(frozen=True)
class Rate:
    name: str
    replicas: int
    rate: float  # requests per second
    n: int
    cpu: str  # what each process used, for "what limits the ratio"
    waits: str = ""  # what PostgreSQL's backends were doing (bench.pgwaits)


def body(action: str, i: int) -> dict[str, Any]:
    amount = 20 if action == "auto" else 900  # process_refund: review above 500
    return {"action": "process_refund", "params": {**REFUND, "amount": amount, "order_id": f"{action}-{i}"}}


async def closed_loop(
    urls: Sequence[str],
    path: str,
    make: Callable[[int], dict[str, Any]],
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    warmup: int = 2,
) -> tuple[list[str], float, float]:
    """``concurrency`` clients POST ``make(i)`` round-robin over ``urls`` for ``seconds``, after a warm-up of
    ``warmup`` requests per client, not counted. Returns the accepted ids, and the start and end times."""
    counter = itertools.count()
    accepted: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> str:
            i = next(counter)
            async with http.post(urls[i % len(urls)] + path, json=make(i), headers=headers) as resp:
                raw = await resp.read()
                if resp.status not in (200, 202):
                    raise RuntimeError(f"HTTP {resp.status}: {raw[:500]!r}")
            return str(json.loads(raw).get("id", i))

        await asyncio.gather(*(one() for _ in range(warmup * concurrency)))
        start = time.perf_counter()
        stop_at = start + seconds

        async def client() -> None:
            while time.perf_counter() < stop_at:
                accepted.append(await one())

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return accepted, start, time.perf_counter()


async def wait_for_cards(emulator: Emulator, before: int, n: int, timeout: float = 120.0) -> float:
    """The moment the channel holds ``n`` more top-level messages than ``before``."""
    channel = emulator.workspace.resolve_channel(CHANNEL)
    assert channel is not None
    deadline = time.perf_counter() + timeout
    version = 0
    while len(channel.top_level()) < before + n:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{before + n - len(channel.top_level())} cards missing after {timeout:.0f} s")
        version = await emulator.wait_changed(version, 0.05)
    return time.perf_counter()


@asynccontextmanager
async def floors(url: str, count: int, tmp: Path) -> AsyncIterator[list[Proc]]:
    """``count`` bare floor servers on the database at ``url`` (started one after another: one creates the table)."""
    async with AsyncExitStack() as stack:
        procs = []
        for n in range(count):
            port = free_port()
            args = ["-m", "bench.floor", "--port", str(port), "--postgres", url]
            procs.append(await stack.enter_async_context(process(args, os.environ, port, tmp / f"floor-{n}.log")))
        yield procs


def names(procs: Sequence[Proc], prefix: str) -> dict[str, Proc]:
    return {f"{prefix}-{n + 1}": p for n, p in enumerate(procs)}


async def measure_floor(server: str, count: int, concurrency: int, seconds: float, tmp: Path) -> Rate:
    async with postgres_database(server) as url, floors(url, count, tmp) as procs, PgWaits(url) as waits:
        with CpuMeter(names(procs, "floor"), make_url(url).database) as cpu:
            accepted, start, end = await closed_loop(
                [p.url for p in procs], "/v1/requests", lambda i: {"n": i}, {}, concurrency, seconds
            )
    n = len(accepted)
    return Rate(FLOOR, count, n / (end - start), n, cpu.summary(n), waits.summary())


async def measure_countersign(
    emulator: Emulator, server: str, count: int, concurrency: int, seconds: float, tmp: Path
) -> list[Rate]:
    rows = []
    async with postgres_database(server) as url, services(emulator, url, count, tmp, bench_manifests()) as (procs, key):
        urls = [p.url for p in procs]
        headers = {"Authorization": f"Bearer {key}"}
        database = make_url(url).database
        async with PgWaits(url) as waits:
            with CpuMeter(names(procs, "replica"), database) as cpu:
                accepted, start, end = await closed_loop(
                    urls, "/v1/requests", lambda i: body("auto", i), headers, concurrency, seconds
                )
        n = len(accepted)
        rows.append(Rate("countersign: auto-approve", count, n / (end - start), n, cpu.summary(n), waits.summary()))
        channel = emulator.workspace.resolve_channel(CHANNEL)
        assert channel is not None
        # No warm-up: the auto-approvals just warmed the connections and the key caches.
        async with PgWaits(url) as waits:
            with CpuMeter(names(procs, "replica"), database) as cpu:
                before = len(channel.top_level())
                accepted, start, _ = await closed_loop(
                    urls, "/v1/requests", lambda i: body("review", i), headers, concurrency, seconds, warmup=0
                )
                done = await wait_for_cards(emulator, before, len(accepted))
        n = len(accepted)
        name = "countersign: review (card in Slack)"
        rows.append(Rate(name, count, n / (done - start), n, cpu.summary(n), waits.summary()))
    return rows


def table(rows: Sequence[Rate]) -> str:
    base = {(r.name, r.replicas): r.rate for r in rows}
    lines = [
        f"| {'case':<40} | {'replicas':>8} | {'req/s':>7} | {'x 1 replica':>11} | {'x floor':>7} | CPU ms per request",
        f"|{'-' * 42}|{'-' * 10}|{'-' * 9}|{'-' * 13}|{'-' * 9}|{'-' * 20}",
    ]
    for r in rows:
        one = base.get((r.name, 1))
        floor = base.get((FLOOR, r.replicas))
        scale = f"{r.rate / one:.2f}" if one else ""
        vs_floor = f"{r.rate / floor:.2f}" if floor else ""
        lines.append(f"| {r.name:<40} | {r.replicas:>8} | {r.rate:>7.0f} | {scale:>11} | {vs_floor:>7} | {r.cpu}")
    lines.append("\nPostgreSQL backends of the run's database, on average (bench.pgwaits):")
    lines += [f"- {r.name}, {r.replicas} replica(s): {r.waits}" for r in rows]
    return "\n".join(lines)


async def run(server: str, seconds: float, concurrency: int, burst: int, latency: float, failover_on: bool) -> None:
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="cs-replicas-"))
    print(f"replicas: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; logs in {tmp}")
    rows: list[Rate] = []
    async with running_emulator(EmulatorConfig(), load_seed(bench_manifests())) as emulator:
        for count in (1, 2):
            rows.append(await measure_floor(server, count, concurrency, seconds, tmp))
        for count in (1, 2):
            rows.extend(await measure_countersign(emulator, server, count, concurrency, seconds, tmp))
        rows.sort(key=lambda r: (not r.name.startswith("floor"), r.name, r.replicas))
        print(f"\nscaling: {concurrency} clients, round-robin over the replicas, {seconds:g} s per row")
        print(table(rows))
    if failover_on:
        async with running_emulator(EmulatorConfig(), load_seed(bench_manifests())) as emulator:
            report = await failover.run(emulator, server, burst, concurrency, latency, tmp)
        print(report)
    print(f"\nbench.replicas: {time.perf_counter() - started:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV) or DEFAULT_SERVER, help="a server URL")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each scaling row (default 6)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--burst", type=int, default=600, help="review requests in the failover burst")
    parser.add_argument("--slack-latency", type=float, default=0.1, help="chat.postMessage answer delay (failover)")
    parser.add_argument("--no-failover", action="store_true", help="scaling only")
    parser.add_argument("--quick", action="store_true", help="3 s rows and a burst of 300")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.burst = 3.0, 300
    asyncio.run(
        run(args.postgres, args.seconds, args.concurrency, args.burst, args.slack_latency, not args.no_failover)
    )


if __name__ == "__main__":
    main()
