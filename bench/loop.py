"""The approval loop under a steady load: request -> card, and click -> agent.

    python -m bench.loop [--rate 100] [--seconds 10]

One process: the Slack emulator and the real service (``Runtime``: agent API, Bolt, outbox
worker, deadline scheduler) on a temporary SQLite database. Agents POST review requests at a
steady ``--rate`` per second for ``--seconds``. For each one we time

* request -> card: from sending the POST to the emulator holding the ``chat.postMessage`` of
  its card;
* click -> agent: from a reviewer's Approve click (a signed delivery through the emulator) to
  the agent's long poll (``GET`` with ``Prefer: wait=60``, already waiting) getting the decision.

Baselines, measured in the same run at the same rate, are the least any implementation could
do for each path with the same parts:

* request -> card floor: POST to a bare aiohttp handler that commits one SQLite INSERT and then
  makes one ``chat.postMessage`` to the emulator before answering;
* click -> agent floor: the emulator's signed click delivery to a bare handler that commits one
  SQLite INSERT and wakes an agent's pending HTTP request with the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import platform
import re
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from bench.stack import MANIFESTS, service
from bot.ids import ActionId
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import running_emulator

CHANNEL = "C0SUPPORT1"
REVIEWERS = ("U0ADA", "U0BEN", "U0CHLOE")
REQUEST_ID = re.compile(r"Request `([0-9A-Za-z_-]+)`")
REFUND = {
    "amount": 620,
    "currency": "EUR",
    "customer": {"name": "Ana", "email": "ana@example.com"},
    "card_number": "4111111111111111",
    "order_id": "A-1",
}


@dataclass
class Samples:
    name: str
    values: list[float] = field(default_factory=list)
    failures: int = 0

    def pct(self, q: float) -> float:
        ordered = sorted(self.values)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def steady(rate: float, seconds: float, one: Callable[[int], Awaitable[None]]) -> None:
    """Start ``one(i)`` at a steady ``rate`` per second (open loop: a slow one never delays the next)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Future[None]] = []
    for i in range(int(rate * seconds)):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)


class CardWatcher:
    """Resolves, per request id, the moment the emulator received the chat.postMessage of its card."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.cards: dict[str, asyncio.Future[tuple[float, str]]] = {}
        self._seen = 0

    def future(self, request_id: str) -> asyncio.Future[tuple[float, str]]:
        return self.cards.setdefault(request_id, asyncio.get_running_loop().create_future())

    async def run(self) -> None:
        version = 0
        while True:
            version = await self.emulator.wait_changed(version, 0.05)
            now = time.perf_counter()
            calls = self.emulator.calls
            for call in calls[self._seen :]:
                if call.method != "chat.postMessage" or call.args.get("thread_ts") or not call.ok:
                    continue
                match = REQUEST_ID.search(str(call.args.get("blocks")))
                if match:
                    fut = self.future(match.group(1))
                    if not fut.done():
                        fut.set_result((now, str(call.response["ts"])))
            self._seen = len(calls)


async def loop_phase(
    emulator: Emulator, runtime: Runtime, key: str, rate: float, seconds: float
) -> tuple[Samples, Samples]:
    to_card, to_agent = Samples("request -> card"), Samples("click -> agent")
    watcher = CardWatcher(emulator)
    watching = asyncio.create_task(watcher.run())
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def one(i: int) -> None:
            body = {"action": "process_refund", "params": {**REFUND, "order_id": f"B-{i}"}}
            sent = time.perf_counter()
            async with http.post(runtime.url + "/v1/requests", json=body, headers=headers) as resp:
                created = await resp.json()
            if resp.status != 202:
                to_card.failures += 1
                return
            try:
                posted, ts = await asyncio.wait_for(watcher.future(created["id"]), timeout=60)
            except TimeoutError:
                to_card.failures += 1
                return
            to_card.values.append(posted - sent)

            async def poll() -> dict[str, Any]:
                url = f"{runtime.url}/v1/requests/{created['id']}"
                async with http.get(url, headers={**headers, "Prefer": "wait=60"}) as r:
                    result: dict[str, Any] = await r.json()
                    return result

            polling = asyncio.create_task(poll())
            await asyncio.sleep(0.01)  # let the agent's long poll reach the service first
            clicked = time.perf_counter()
            user = REVIEWERS[i % len(REVIEWERS)]
            delivery = await emulator.click(user, channel=CHANNEL, message_ts=ts, action_id=ActionId.APPROVE)
            decided = await polling
            if delivery.ok and decided.get("status") == "approved":
                to_agent.values.append(time.perf_counter() - clicked)
            else:
                to_agent.failures += 1

        await steady(rate, seconds, one)
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    return to_card, to_agent


@contextlib.asynccontextmanager
async def bare_server(routes: list[web.RouteDef]) -> Any:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    return db


def _insert(db: sqlite3.Connection, body: str) -> None:
    db.execute("INSERT INTO t (body) VALUES (?)", (body,))


async def floor_request_to_card(emulator: Emulator, tmp: Path, rate: float, seconds: float) -> Samples:
    samples = Samples("floor: POST + 1 INSERT + chat.postMessage")
    db = _sqlite(tmp / "floor-card.db")
    slack = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url.rstrip("/") + "/")

    async def handler(request: web.Request) -> web.Response:
        body = await request.text()
        _insert(db, body)
        response = await slack.chat_postMessage(channel=CHANNEL, text="floor", blocks=[])
        return web.json_response({"ts": response["ts"]})

    async with bare_server([web.post("/v1/requests", handler)]) as url, aiohttp.ClientSession() as http:

        async def one(i: int) -> None:
            sent = time.perf_counter()
            async with http.post(url + "/v1/requests", json={"action": "x", "params": REFUND}) as resp:
                await resp.read()
            samples.values.append(time.perf_counter() - sent)

        await steady(rate, seconds, one)
    db.close()
    return samples


async def floor_click_to_agent(emulator: Emulator, tmp: Path, rate: float, seconds: float) -> Samples:
    samples = Samples("floor: signed click + 1 INSERT + wake a poll")
    db = _sqlite(tmp / "floor-click.db")
    waiting: dict[str, asyncio.Future[str]] = {}
    slack = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url.rstrip("/") + "/")

    def fut(key: str) -> asyncio.Future[str]:
        return waiting.setdefault(key, asyncio.get_running_loop().create_future())

    async def events(request: web.Request) -> web.Response:
        form = await request.post()
        _insert(db, str(form.get("payload")))
        action_ts = re.search(r'"message_ts": ?"([0-9.]+)"', str(form.get("payload")))
        if action_ts:
            f = fut(action_ts.group(1))
            if not f.done():
                f.set_result("approved")
        return web.Response()

    async def poll(request: web.Request) -> web.Response:
        return web.json_response({"status": await fut(request.match_info["ts"])})

    routes = [web.post("/slack/events", events), web.get("/poll/{ts}", poll)]
    saved = emulator.config.bot_url
    async with bare_server(routes) as url, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        emulator.config.bot_url = url + "/slack/events"
        button = {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "action_id": "approve"}
        card = [{"type": "actions", "block_id": "b", "elements": [button]}]

        async def one(i: int) -> None:
            posted = await slack.chat_postMessage(channel=CHANNEL, text="floor card", blocks=card)
            ts = str(posted["ts"])

            async def get() -> None:
                async with http.get(f"{url}/poll/{ts}") as resp:
                    await resp.read()

            polling = asyncio.create_task(get())
            await asyncio.sleep(0.01)
            clicked = time.perf_counter()
            await emulator.click(REVIEWERS[i % 3], channel=CHANNEL, message_ts=ts, action_id="approve")
            await polling
            samples.values.append(time.perf_counter() - clicked)

        try:
            await steady(rate, seconds, one)
        finally:
            emulator.config.bot_url = saved
    db.close()
    return samples


async def main(rate: float, seconds: float, floor_seconds: float) -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="countersign-bench-") as tmpdir:
        tmp = Path(tmpdir)
        async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emulator:
            card_floor = await floor_request_to_card(emulator, tmp, rate, floor_seconds)
            click_floor = await floor_click_to_agent(emulator, tmp, rate, floor_seconds)
            async with service(tmp / "countersign.db", emulator) as stack:
                started = time.perf_counter()
                to_card, to_agent = await loop_phase(emulator, stack.runtime, stack.key, rate, seconds)
                elapsed = time.perf_counter() - started

    python = platform.python_version()
    print(f"\ncountersign approval loop: {rate:g} req/s for {seconds:g} s on SQLite (Python {python})")
    print(f"{len(to_card.values)} requests carded, {len(to_agent.values)} decided in {elapsed:.1f} s\n")
    header = f"{'path':<48} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'x floor p50':>12} {'x floor p99':>12} {'failed':>7}"
    print(header)
    print("-" * len(header))
    for measured, floor in ((to_card, card_floor), (to_agent, click_floor)):
        for row, ref in ((measured, floor), (floor, None)):
            ratio50 = f"{row.pct(0.5) / ref.pct(0.5):.1f}" if ref else ""
            ratio99 = f"{row.pct(0.99) / ref.pct(0.99):.1f}" if ref else ""
            print(
                f"{row.name:<48} {len(row.values):>6} {row.pct(0.5):>9.1f} {row.pct(0.99):>9.1f} "
                f"{ratio50:>12} {ratio99:>12} {row.failures:>7}"
            )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100, help="review requests per second (default 100)")
    parser.add_argument("--seconds", type=float, default=10, help="how long to keep the rate (default 10)")
    parser.add_argument("--floor-seconds", type=float, default=3, help="how long to measure each floor (default 3)")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.floor_seconds))


if __name__ == "__main__":
    cli()
