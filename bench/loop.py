"""The approval loop under a steady load: request -> card, and click -> agent.

    python -m bench.loop [--rate 100] [--seconds 10] [--service process|inline] [--postgres URL]

The real service (agent API, Bolt, outbox worker, deadline scheduler) runs as ``countersign serve``
in a process of its own (``--service process``, the default; ``inline`` runs the ``Runtime`` in this
process instead), on a new SQLite file or, with ``--postgres``, a new PostgreSQL database. The Slack
emulator (no rate limit) and the agents run in this process. Agents POST review requests at a
steady ``--rate`` per second for ``--seconds``. For each one we time

* request -> card: from sending the POST to the emulator holding the ``chat.postMessage`` of
  its card;
* click -> agent: from a reviewer's Approve click (a signed delivery through the emulator) to
  the agent's long poll (``GET`` with ``Prefer: wait=60``, already waiting) getting the decision.

and print the service's peak resident memory (``VmHWM``) and CPU per request. Targets: both p99s
under 100 ms at 100 req/s (printed, not asserted).

Baselines, measured in the same run at the same rate, are the least any implementation could do
for each path with the same parts: the bare floor server (``bench.floor``), run the same way as
the service (its own process, or this one) on the same kind of database:

* request -> card floor: POST to a bare aiohttp handler that commits one INSERT and then
  makes one ``chat.postMessage`` to the emulator before answering;
* click -> agent floor: the emulator's signed click delivery to a bare handler that commits one
  INSERT and wakes an agent's pending HTTP request with the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import re
import resource
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bench import floor, procs
from bench.intake import postgres_database
from bench.stack import bench_manifests, service
from bot.ids import ActionId
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import running_emulator, serve_app

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
        self.stopped = False
        self._seen = 0

    def future(self, request_id: str) -> asyncio.Future[tuple[float, str]]:
        return self.cards.setdefault(request_id, asyncio.get_running_loop().create_future())

    async def run(self) -> None:
        version = 0
        # Stopped by a flag, not by cancelling: Python 3.11's asyncio.wait_for (inside wait_changed) can swallow
        # a cancellation that lands as its wait ends, and the watcher then ran on forever (a run hung for minutes).
        while not self.stopped:
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


async def loop_phase(emulator: Emulator, base: str, key: str, rate: float, seconds: float) -> tuple[Samples, Samples]:
    to_card, to_agent = Samples("request -> card"), Samples("click -> agent")
    watcher = CardWatcher(emulator)
    watching = asyncio.create_task(watcher.run())
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def one(i: int) -> None:
            body = {"action": "process_refund", "params": {**REFUND, "order_id": f"B-{i}"}}
            sent = time.perf_counter()
            async with http.post(base + "/v1/requests", json=body, headers=headers) as resp:
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
                url = f"{base}/v1/requests/{created['id']}"
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
    watcher.stopped = True
    await watching
    return to_card, to_agent


@contextlib.asynccontextmanager
async def floor_server(mode: str, emulator: Emulator, database: str, logs: Path) -> AsyncIterator[str]:
    """The bare floor server (``bench.floor``) on ``database``, in this process or its own; yields its URL."""
    if mode == "inline":
        sqlite = database.removeprefix("sqlite+aiosqlite:///")
        insert, close = await (floor.sqlite_insert(sqlite) if sqlite != database else floor.postgres_insert(database))
        slack = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url.rstrip("/") + "/")
        try:
            async with serve_app(floor.build_app(insert, slack, CHANNEL)) as url:
                yield url
        finally:
            await close()
        return
    port = procs.free_port()
    where = ["--sqlite", database.removeprefix("sqlite+aiosqlite:///")] if database.startswith("sqlite") else [
        "--postgres", database
    ]  # fmt: skip
    args = ["-m", "bench.floor", "--port", str(port), *where, "--slack-api", emulator.api_url]
    args += ["--slack-token", emulator.config.bot_token, "--channel", CHANNEL]
    async with procs.process(args, os.environ, port, logs / "floor.log") as proc:
        yield proc.url


@contextlib.asynccontextmanager
async def countersign(
    mode: str, emulator: Emulator, database: str, logs: Path
) -> AsyncIterator[tuple[str, str, procs.Proc | None]]:
    """The service on ``database``, in this process (``Runtime``) or as ``countersign serve``; yields its URL,
    an API key and its process (None inline)."""
    if mode == "inline":
        async with service(database, emulator) as stack:
            yield stack.runtime.url, stack.key, None
        return
    env = procs.service_env(emulator, database, bench_manifests())
    key = await procs.api_key(env, "acme-support")
    async with procs.serve(env, logs / "countersign.log") as proc:
        emulator.config.bot_url = proc.url + "/slack/events"
        yield proc.url, key, proc


async def floor_request_to_card(base: str, rate: float, seconds: float) -> Samples:
    samples = Samples("floor: POST + 1 INSERT + chat.postMessage")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> None:
            sent = time.perf_counter()
            async with http.post(base + "/v1/cards", json={"action": "x", "params": REFUND}) as resp:
                await resp.read()
            samples.values.append(time.perf_counter() - sent)

        await steady(rate, seconds, one)
    return samples


async def floor_click_to_agent(emulator: Emulator, base: str, rate: float, seconds: float) -> Samples:
    samples = Samples("floor: signed click + 1 INSERT + wake a poll")
    slack = AsyncWebClient(token=emulator.config.bot_token, base_url=emulator.api_url.rstrip("/") + "/")
    saved = emulator.config.bot_url
    emulator.config.bot_url = base + "/slack/events"
    button = {"type": "button", "text": {"type": "plain_text", "text": "Approve"}, "action_id": "approve"}
    card = [{"type": "actions", "block_id": "b", "elements": [button]}]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> None:
            posted = await slack.chat_postMessage(channel=CHANNEL, text="floor card", blocks=card)
            ts = str(posted["ts"])

            async def get() -> None:
                async with http.get(f"{base}/poll/{ts}") as resp:
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
    return samples


@contextlib.asynccontextmanager
async def database(postgres: str | None, tmp: Path, name: str) -> AsyncIterator[str]:
    """A new database: a SQLite file in ``tmp``, or a new database on the PostgreSQL server (dropped after)."""
    if postgres is None:
        yield f"sqlite+aiosqlite:///{tmp / name}.db"
        return
    async with postgres_database(postgres) as url:
        yield url


async def main(rate: float, seconds: float, floor_seconds: float, mode: str, postgres: str | None) -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="countersign-bench-") as tmpdir:
        tmp = Path(tmpdir)
        async with running_emulator(EmulatorConfig(), load_seed(bench_manifests())) as emulator:
            async with database(postgres, tmp, "floor") as url, floor_server(mode, emulator, url, tmp) as base:
                card_floor = await floor_request_to_card(base, rate, floor_seconds)
                click_floor = await floor_click_to_agent(emulator, base, rate, floor_seconds)
            async with (
                database(postgres, tmp, "countersign") as url,
                countersign(mode, emulator, url, tmp) as (base, key, proc),
            ):
                cpu_before = proc.cpu_seconds() if proc else 0.0
                started = time.perf_counter()
                to_card, to_agent = await loop_phase(emulator, base, key, rate, seconds)
                elapsed = time.perf_counter() - started
                cpu = (proc.cpu_seconds() - cpu_before) if proc else float("nan")
                # The service's own peak when it runs alone; inline, the whole process (emulator and load too).
                rss = proc.max_rss_mib() if proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    python = platform.python_version()
    store = "PostgreSQL" if postgres else "SQLite"
    where = "its own process" if mode == "process" else "this process, with the emulator and the load"
    print(f"\ncountersign approval loop: {rate:g} req/s for {seconds:g} s on {store}, the service in {where}")
    print(f"(Python {python}, {os.cpu_count()} CPUs; floors measured in the same run, the same way)")
    print(f"{len(to_card.values)} requests carded, {len(to_agent.values)} decided in {elapsed:.1f} s\n")
    header = f"{'path':<48} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'x floor p50':>12} {'x floor p99':>12} {'failed':>7}"
    print(header)
    print("-" * len(header))
    for measured, floor_samples in ((to_card, card_floor), (to_agent, click_floor)):
        for row, ref in ((measured, floor_samples), (floor_samples, None)):
            ratio50 = f"{row.pct(0.5) / ref.pct(0.5):.1f}" if ref else ""
            ratio99 = f"{row.pct(0.99) / ref.pct(0.99):.1f}" if ref else ""
            print(
                f"{row.name:<48} {len(row.values):>6} {row.pct(0.5):>9.1f} {row.pct(0.99):>9.1f} "
                f"{ratio50:>12} {ratio99:>12} {row.failures:>7}"
            )
    who = "service" if proc else "bench process (service, emulator and load)"
    print(f"\nmax RSS of the {who}: {rss:.0f} MiB")
    if proc:
        print(f"service CPU: {1000 * cpu / max(1, len(to_card.values)):.1f} ms per request (card and click)")
    target = 100.0
    for path in (to_card, to_agent):
        p99 = path.pct(0.99)
        verdict = "met" if p99 < target and not path.failures else "NOT MET"
        print(f"{path.name} p99 {p99:.0f} ms: target < {target:.0f} ms {verdict}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=100, help="review requests per second (default 100)")
    parser.add_argument("--seconds", type=float, default=10, help="how long to keep the rate (default 10)")
    parser.add_argument("--floor-seconds", type=float, default=3, help="how long to measure each floor (default 3)")
    parser.add_argument(
        "--service",
        choices=("process", "inline"),
        default="process",
        help="the service (and the floor) as a process of its own (default), or in this process",
    )
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.floor_seconds, args.service, args.postgres))


if __name__ == "__main__":
    cli()
