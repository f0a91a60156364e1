"""Audit log throughput: append, seal, and verify over a long chain, against what they must at least cost.

    python -m bench.audit [--events 1000000] [--appends 5000] [--window-requests 2000] [--database-url URL]

Baselines measured in the same run: the bare hashing loop (``sha256(prev || canonical_json)``
over the same events, no database) and a bare batched INSERT of the same rows (the floor of
writing them). The chain for ``verify`` is loaded with that bulk INSERT. Appends through
``AuditLog.append`` (an unsealed INSERT, no head) are timed on a smaller sample, then the
sequencer seals them all (``Sequencer.seal_once``: batches of 2,000 per transaction).
Last, the seal window under load: the real service (bench.stack) takes auto-approved requests
from 32 clients while the age of the oldest unsealed event is sampled every 10 ms; the sampled
maximum is how long an event waited, committed, before the sequencer sealed it.
Target: ``verify`` of 1M events under 10 s on SQLite. Default database: a temporary SQLite file;
a ``--database-url`` must name a scratch database (the run leaves its tables and rows there).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from bench.intake import REFUND, drive
from bench.stack import service
from policy.sensitive import canonical_json
from store import (
    GENESIS_HASH,
    Sequencer,
    create_engine,
    event_hash,
    format_at,
    make_sessionmaker,
    uow,
    upgrade,
    verify,
)
from store.models import AuditEvent, AuditHead, AuditUnsealed

T0 = datetime(2025, 1, 1, tzinfo=UTC)
BULK_TENANT = "bench"
APPEND_TENANT = "bench-append"


def events(n: int) -> Iterator[dict[str, Any]]:
    """Realistic-sized events: a vote on a refund, as the service writes them."""
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        at = T0 + timedelta(milliseconds=seq)
        payload = {
            "action": "process_refund",
            "params": {"amount": seq % 1000, "card": "sha256:ab12"},
            "vote": "approve",
        }
        digest = event_hash(
            prev,
            tenant=BULK_TENANT,
            seq=seq,
            kind="vote.cast",
            request_id=f"r{seq // 3}",
            actor="U01",
            at=format_at(at),
            payload=payload,
        )
        yield {
            "tenant": BULK_TENANT,
            "seq": seq,
            "prev_hash": prev,
            "hash": digest,
            "kind": "vote.cast",
            "request_id": f"r{seq // 3}",
            "actor": "U01",
            "at": at,
            "payload": canonical_json(payload),
        }
        prev = digest


def hash_only(n: int) -> float:
    start = time.perf_counter()
    for _ in events(n):
        pass
    return time.perf_counter() - start


async def run(url: str, n: int, appends: int) -> list[tuple[str, int, float]]:
    engine = create_engine(url)
    await upgrade(engine)
    sm = make_sessionmaker(engine)
    async with uow(sm) as tx:
        await tx.tenants.ensure(BULK_TENANT, now=T0)
        await tx.tenants.ensure(APPEND_TENANT, now=T0)
    rows: list[tuple[str, int, float]] = []

    # The bare INSERT baseline doubles as the loader for the verify run.
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for row in events(n):
        batch.append(row)
        if len(batch) == 10_000:
            await _insert(engine, batch)
            batch = []
    if batch:
        await _insert(engine, batch)
    async with engine.begin() as conn:
        last = row
        await conn.execute(
            update(AuditHead).where(AuditHead.tenant == BULK_TENANT).values(seq=last["seq"], hash=last["hash"])
        )
    rows.append(("baseline: hash + bare batched INSERT", n, time.perf_counter() - start))

    start = time.perf_counter()
    for i in range(appends):
        async with uow(sm) as tx:
            await tx.audit.append(APPEND_TENANT, "vote.cast", now=T0, payload={"i": i, "vote": "approve"}, actor="U01")
    rows.append(("append: 1 event per transaction", appends, time.perf_counter() - start))

    start = time.perf_counter()
    for i in range(0, appends, 100):
        async with uow(sm) as tx:
            for j in range(100):
                await tx.audit.append(APPEND_TENANT, "vote.cast", now=T0, payload={"i": i + j}, actor="U01")
    rows.append(("append: 100 events per transaction", appends, time.perf_counter() - start))

    start = time.perf_counter()
    sealed = await Sequencer(engine, now=lambda: datetime.now(UTC)).seal_once()
    assert sealed == 2 * appends, sealed
    rows.append(("seal: Sequencer.seal_once, 2,000 per commit", sealed, time.perf_counter() - start))
    sealed_chain = await verify(engine, APPEND_TENANT)
    assert sealed_chain.ok and sealed_chain.events == 2 * appends, sealed_chain.describe()

    start = time.perf_counter()
    async with engine.connect() as conn:
        query = select(AuditEvent).where(AuditEvent.tenant == BULK_TENANT).order_by(AuditEvent.seq)
        stream = await conn.stream(query.execution_options(yield_per=5000))
        async for _part in stream.partitions():
            pass
    rows.append(("baseline: bare streamed SELECT of the chain", n, time.perf_counter() - start))

    start, cpu = time.perf_counter(), time.process_time()
    result = await verify(engine, BULK_TENANT)
    elapsed = time.perf_counter() - start
    # On a shared machine the wall time includes waiting for a CPU; the process's CPU time does not.
    print(f"verify: {elapsed:.2f} s wall, {time.process_time() - cpu:.2f} s CPU, load average {os.getloadavg()[0]:.1f}")
    assert result.ok and result.events == n, result.describe()
    rows.append(("verify (store.verify)", n, elapsed))
    await engine.dispose()
    return rows


async def seal_window(url: str, requests: int) -> tuple[float, list[float]]:
    """Requests per second through the real service, and the ages (seconds) of the oldest unsealed
    event sampled every 10 ms meanwhile, from a thread of its own (the service's loop is busy)."""
    async with service(url) as stack:
        done = threading.Event()
        ages: list[float] = []
        watcher = create_engine(url)

        def sample() -> None:
            async def read() -> datetime | None:
                async with watcher.connect() as conn:
                    oldest: datetime | None = (await conn.execute(select(func.min(AuditUnsealed.at)))).scalar()
                    await conn.rollback()
                return oldest

            async def loop() -> None:
                while not done.is_set():
                    oldest = await read()
                    if oldest is not None:
                        ages.append((datetime.now(UTC) - oldest).total_seconds())
                    await asyncio.sleep(0.01)
                await watcher.dispose()

            asyncio.run(loop())

        sampler = threading.Thread(target=sample)
        sampler.start()
        params = [{**REFUND, "amount": 20, "order_id": f"W{i}"} for i in range(requests)]
        bodies = [{"action": "process_refund", "params": p} for p in params]
        headers = {"Authorization": f"Bearer {stack.key}"}
        try:
            seconds = await drive(stack.runtime.url + "/v1/requests", bodies, headers, 32)
        finally:
            done.set()
            await asyncio.to_thread(sampler.join)
    return requests / seconds, ages


async def _insert(engine: Any, batch: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(AuditEvent), batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000, help="chain length for verify (default 1,000,000)")
    parser.add_argument("--appends", type=int, default=5000, help="events appended through AuditLog.append (twice)")
    parser.add_argument("--window-requests", type=int, default=2000, help="requests driven for the seal window")
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args()
    appends = max(100, args.appends // 100 * 100)

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        base = hash_only(args.events)
        rows = [
            ("baseline: sha256 + canonical_json, no database", args.events, base),
            *asyncio.run(run(url, args.events, appends)),
        ]
    per_event_base = base / args.events
    backend = url.split(":", 1)[0]
    print(f"audit chain, {backend}, {args.events:,} events, Python {platform.python_version()}, {platform.machine()}\n")
    print(
        f"| {'case':<48} | {'events':>9} | {'seconds':>8} | {'events/s':>10} | {'µs/event':>8} | {'× baseline':>10} |"
    )
    print(f"|{'-' * 50}|{'-' * 11}|{'-' * 10}|{'-' * 12}|{'-' * 10}|{'-' * 12}|")
    for name, count, seconds in rows:
        per_event = seconds / count
        print(
            f"| {name:<48} | {count:>9,} | {seconds:>8.2f} | {count / seconds:>10,.0f} | "
            f"{per_event * 1e6:>8.1f} | {per_event / per_event_base:>10.1f} |"
        )
    print("\ntarget: verify of 1,000,000 events < 10 s on SQLite")
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'window.db'}"
        rate, ages = asyncio.run(seal_window(url, args.window_requests))
    ages.sort()
    p99 = ages[int(len(ages) * 0.99)] if ages else 0.0
    print(
        f"seal window: {args.window_requests:,} auto-approved requests at {rate:,.0f} req/s (32 clients); "
        f"the oldest unsealed event was p50 {ages[len(ages) // 2] * 1000 if ages else 0:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {max(ages, default=0) * 1000:.0f} ms old ({len(ages)} samples, every 10 ms)"
    )


if __name__ == "__main__":
    main()
