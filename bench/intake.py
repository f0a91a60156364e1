"""Intake throughput: agent requests per second, against the floor measured in the same run.

    python -m bench.intake [--requests 2000] [--concurrency 32]

Floor: a bare aiohttp handler that parses the JSON body and does one SQLite insert (aiosqlite,
WAL) per request. Countersign: the real service (policy, store, audit, outbox, Bolt) on SQLite,
with the Slack emulator receiving the cards. For review requests the clock stops when every
card is in the emulator's channel, not when the API answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
from aiohttp import web

from bench.stack import service

ROOT = Path(__file__).resolve().parent.parent
REFUND = {"amount": 900, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111", "order_id": "B"}


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


async def floor(n: int, concurrency: int, directory: Path) -> float:
    db = await aiosqlite.connect(directory / "floor.db")
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("CREATE TABLE request (id INTEGER PRIMARY KEY, body TEXT)")

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        await db.execute("INSERT INTO request (body) VALUES (?)", (json.dumps(body),))
        await db.commit()
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
        await db.close()
    return n / seconds


async def countersign(n: int, concurrency: int, directory: Path, action: str) -> float:
    async with service(directory / f"{action}.db") as stack:
        amount = 20 if action == "auto" else 900
        bodies = [
            {"action": "process_refund", "params": {**REFUND, "amount": amount, "order_id": f"B{i}"}} for i in range(n)
        ]
        start = time.perf_counter()
        await drive(stack.runtime.url + "/v1/requests", bodies, {"Authorization": f"Bearer {stack.key}"}, concurrency)
        if action == "review":
            channel = stack.emulator.workspace.resolve_channel("C0SUPPORT1")
            assert channel is not None
            while len(list(channel.top_level())) < n:
                await asyncio.sleep(0.01)
        return n / (time.perf_counter() - start)


async def run(n: int, concurrency: int) -> list[tuple[str, float, float]]:
    directory = Path(tempfile.mkdtemp(prefix="cs-intake-"))
    base = await floor(n, concurrency, directory)
    rows = [("floor: bare aiohttp + 1 SQLite insert", base, 1.0)]
    for action, label in (("auto", "countersign: auto-approve"), ("review", "countersign: review (card in Slack)")):
        rate = await countersign(n, concurrency, directory, action)
        rows.append((label, rate, rate / base))
    return rows


def table(rows: list[tuple[str, float, float]]) -> str:
    lines = [f"| {'case':<40} | {'req/s':>8} | {'ratio':>6} |", f"|{'-' * 42}|{'-' * 10}|{'-' * 8}|"]
    lines += [f"| {name:<40} | {rate:>8.0f} | {ratio:>6.2f} |" for name, rate, ratio in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.requests, args.concurrency))
    print(f"intake throughput: {args.requests} requests, {args.concurrency} concurrent clients, SQLite")
    print(table(rows))


if __name__ == "__main__":
    main()
