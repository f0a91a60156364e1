"""Intake throughput: agent requests per second, against the floor measured in the same run.

    python -m bench.intake [--requests 2000] [--concurrency 32] [--postgres URL]

Floor: a bare aiohttp handler that parses the JSON body and does one insert per request
(aiosqlite on a WAL file with ``synchronous=NORMAL``, as countersign's engine sets it; with
``--postgres``, also asyncpg). Countersign: the real service
(policy, store, audit, outbox, Bolt) with the Slack emulator receiving the cards. For review
requests the clock stops when every card is in the emulator's channel, not when the API answered.

Beside the rates it prints what explains them: the SQL statements each request costs (counted),
and what one statement costs through SQLAlchemy's asyncio adapter against a bare aiosqlite call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
from aiohttp import web
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench import floor
from bench.stack import service

REFUND = {"amount": 900, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111", "order_id": "B"}
POSTGRES_ENV = "COUNTERSIGN_BENCH_POSTGRES_URL"
# The floor answers in about a millisecond: it needs this many requests to measure more than a moment.
FLOOR_REQUESTS = 4000


@dataclass(frozen=True)
class Row:
    name: str
    rate: float  # requests per second
    ratio: float  # against the floor of the same database
    # SQL statements sent per request, BEGIN included and COMMIT not (a driver call, not a statement).
    statements: float | None = None
    note: str = ""


async def drive(url: str, bodies: list[dict[str, Any]], headers: dict[str, str], concurrency: int) -> float:
    """POST every body with ``concurrency`` clients; returns the seconds it took."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with http.post(url, json=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status >= 300 and resp.status != 202:
                        raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - start


async def serve_floor(insert: Callable[[str], Awaitable[None]], n: int, concurrency: int) -> float:
    """Requests per second of a bare aiohttp handler that parses the body and calls ``insert``."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        await insert(json.dumps(body))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/requests", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        seconds = await drive(f"http://127.0.0.1:{port}/v1/requests", [{"n": i} for i in range(n)], {}, concurrency)
    finally:
        await runner.cleanup()
    return n / seconds


async def sqlite_floor(n: int, concurrency: int, directory: Path, name: str = "floor") -> float:
    insert, close = await floor.sqlite_insert(str(directory / f"{name}.db"))
    try:
        return await serve_floor(insert, n, concurrency)
    finally:
        await close()


async def postgres_floor(n: int, concurrency: int, url: str) -> float:
    insert, close = await floor.postgres_insert(url)
    try:
        return await serve_floor(insert, n, concurrency)
    finally:
        await close()


async def countersign(n: int, concurrency: int, database: Path | str, action: str) -> tuple[float, float]:
    """``(requests per second, SQL statements per request)`` of the real service."""
    async with service(database) as stack:
        amount = 20 if action == "auto" else 900
        bodies = [
            {"action": "process_refund", "params": {**REFUND, "amount": amount, "order_id": f"B{i}"}} for i in range(n)
        ]
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        engine = stack.runtime.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        start = time.perf_counter()
        await drive(stack.runtime.url + "/v1/requests", bodies, {"Authorization": f"Bearer {stack.key}"}, concurrency)
        if action == "review":
            channel = stack.emulator.workspace.resolve_channel("C0SUPPORT1")
            assert channel is not None
            while len(list(channel.top_level())) < n:
                await asyncio.sleep(0.01)
        rate = n / (time.perf_counter() - start)
        event.remove(engine, "before_cursor_execute", count)
        return rate, statements / n


async def statement_cost(directory: Path, n: int = 2000) -> tuple[float, float]:
    """Microseconds for one ``SELECT 1``: through SQLAlchemy's asyncio session, and on bare aiosqlite."""
    url = f"sqlite+aiosqlite:///{directory / 'cost.db'}"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            start = time.perf_counter()
            for _ in range(n):
                await conn.execute(text("SELECT 1"))
            orm = (time.perf_counter() - start) / n
    finally:
        await engine.dispose()
    async with aiosqlite.connect(directory / "cost.db") as db:
        start = time.perf_counter()
        for _ in range(n):
            async with db.execute("SELECT 1") as cursor:
                await cursor.fetchall()
        bare = (time.perf_counter() - start) / n
    return orm * 1e6, bare * 1e6


@asynccontextmanager
async def postgres_database(server: str) -> AsyncIterator[str]:
    """A new, empty database on the server for one benchmark, dropped afterwards."""
    name = f"cs_bench_{int(time.time())}_{secrets.token_hex(3)}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def run(n: int, concurrency: int, postgres: str | None = None) -> list[Row]:
    """The floor is measured before and after countersign's rows, each time with at least ``FLOOR_REQUESTS``
    requests, and their mean is the baseline: a floor measured once, over a fraction of a second, moved by
    a factor of three between runs on a shared machine, and every ratio with it."""
    directory = Path(tempfile.mkdtemp(prefix="cs-intake-"))
    floor_n = max(n, FLOOR_REQUESTS)
    before = await sqlite_floor(floor_n, concurrency, directory, "floor-before")
    measured = []
    for action, label in (("auto", "auto-approve"), ("review", "review (card in Slack)")):
        rate, statements = await countersign(n, concurrency, directory / f"{action}.db", action)
        measured.append((f"countersign: {label}", rate, statements))
    after = await sqlite_floor(floor_n, concurrency, directory, "floor-after")
    rows = [_floor("floor: bare aiohttp + 1 SQLite insert", before, after)]
    rows += [Row(name, rate, rate / rows[0].rate, statements) for name, rate, statements in measured]
    if postgres:
        async with postgres_database(postgres) as url:
            before = await postgres_floor(floor_n, concurrency, url)
        measured = []
        for action, label in (("auto", "auto-approve"), ("review", "review (card in Slack)")):
            async with postgres_database(postgres) as url:
                rate, statements = await countersign(n, concurrency, url, action)
            measured.append((f"countersign on PostgreSQL: {label}", rate, statements))
        async with postgres_database(postgres) as url:
            after = await postgres_floor(floor_n, concurrency, url)
        pg = _floor("floor: bare aiohttp + 1 PostgreSQL insert", before, after)
        rows += [pg, *(Row(name, rate, rate / pg.rate, statements) for name, rate, statements in measured)]
    return rows


def _floor(name: str, before: float, after: float) -> Row:
    return Row(name, (before + after) / 2, 1.0, 1, note=f"{name}: {before:.0f} before, {after:.0f} after")


def table(rows: list[Row]) -> str:
    lines = [
        f"| {'case':<50} | {'req/s':>8} | {'ratio':>6} | {'SQL/request':>11} |",
        f"|{'-' * 52}|{'-' * 10}|{'-' * 8}|{'-' * 13}|",
    ]
    for r in rows:
        statements = "" if r.statements is None else f"{r.statements:.1f}"
        lines.append(f"| {r.name:<50} | {r.rate:>8.0f} | {r.ratio:>6.2f} | {statements:>11} |")
    notes = [f"- {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "floors (their mean is the baseline of the rows below them):", *notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--postgres", default=os.environ.get(POSTGRES_ENV), help=f"also run on this PostgreSQL server (${POSTGRES_ENV})"
    )
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.requests, args.concurrency, args.postgres))
    print(f"intake throughput: {args.requests} requests, {args.concurrency} concurrent clients")
    print(table(rows))
    with tempfile.TemporaryDirectory(prefix="cs-cost-") as tmp:
        orm, bare = asyncio.run(statement_cost(Path(tmp)))
    print(f"one SELECT 1: {orm:.0f} us through SQLAlchemy's asyncio adapter, {bare:.0f} us on bare aiosqlite")


if __name__ == "__main__":
    main()
