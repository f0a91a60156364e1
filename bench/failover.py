"""Failover: two replicas on one PostgreSQL, one killed with SIGKILL in the middle of a burst.

Run by ``python -m bench.replicas`` (or alone: ``python -m bench.failover``). Agents send a burst of
review requests round-robin to two ``countersign serve`` processes; reviewers click each card as it
appears, through a router standing in for Slack's load balancer (each signed delivery goes to the
next live replica). When half the burst is accepted, replica 1 is killed with ``kill -9``: from then
on agents and clicks reach replica 2 only, as behind a load balancer that took the dead one out.

``chat.postMessage`` answers ``--slack-latency`` seconds late (the post itself is immediate), as
Slack's do, so the kill finds posts in flight: posted to Slack, not yet recorded.

Printed, not asserted (the outbox lease and its heartbeat are being changed):

* the outbox items the dead replica had claimed (leased) at the kill, and when the cards among them
  appeared, against a target of 15 s; and when all of them were delivered;
* every accepted request exists and has its card; no card and no thread note is posted twice;
* every click Slack got an acknowledgement for is counted (a click in flight at the kill is not
  acknowledged: the reviewer sees an error, and the card keeps its buttons).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.intake import POSTGRES_ENV, postgres_database
from bench.pgwaits import PgWaits
from bench.procs import Proc, services
from bench.stack import bench_manifests
from bot.ids import ActionId
from bot.sandbox import EmulatorConfig, InteractionError
from bot.sandbox.runner import load_seed
from bot.sandbox.server import Emulator
from bot.sandbox.testing import message_text, running_emulator, serve_app
from store.engine import create_engine

CHANNEL = "C0SUPPORT1"
REVIEWERS = ("U0ADA", "U0BEN", "U0CHLOE")
CARD_ID = re.compile(r"Request `([0-9A-Za-z_-]+)`")
TARGET_SECONDS = 15.0
# The service acknowledges a click when its vote commits, or after this long, whichever is first (a vote
# slower than that is acknowledged before it commits: a crash in between loses it). bot.slack.listeners.
ACK_BUDGET = 2.0
FORWARDED = ("Content-Type", "X-Slack-Request-Timestamp", "X-Slack-Signature", "User-Agent")


class Router:
    """Slack's side of a load balancer: each delivery goes to the next live replica, unchanged."""

    def __init__(self, replicas: list[Proc]) -> None:
        self.live = list(replicas)
        self.routed: dict[str, Proc] = {}  # delivery signature -> the replica it went to
        self._next = 0
        self._http: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.live:
            return web.Response(status=503)
        target = self.live[self._next % len(self.live)]
        self._next += 1
        headers = {k: request.headers[k] for k in FORWARDED if k in request.headers}
        self.routed[headers.get("X-Slack-Signature", "")] = target
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.post(target.url + request.path, data=body, headers=headers) as resp:
                answer = await resp.read()
                kind = resp.headers.get("Content-Type", "text/plain")
                return web.Response(status=resp.status, body=answer, headers={"Content-Type": kind})
        except aiohttp.ClientError:
            return web.Response(status=502, text="replica gone")

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post("/slack/events", self.handle)
        try:
            async with serve_app(app) as url:
                yield url + "/slack/events"
        finally:
            if self._http is not None:
                await self._http.close()


@dataclass
class Burst:
    """What happened during the burst, as the agents and Slack saw it."""

    accepted: dict[str, int] = field(default_factory=dict)  # request id -> replica index
    # (card ts, user, seconds to the ack, replica index) of each click Slack got an acknowledgement for
    acked: list[tuple[str, str, float, int]] = field(default_factory=list)
    unacked: int = 0  # clicks Slack showed an error for
    no_button: list[str] = field(default_factory=list)  # cards whose Approve was gone when the reviewer got to it
    killed_at: float = 0.0  # wall time (time.time())
    killed_after: int = 0  # requests accepted before the kill
    # The outbox items leased at the kill: (id, kind, lease owner, request id, attempts).
    leased: list[tuple[int, str, str, str, int]] = field(default_factory=list)
    waits: str = ""  # what PostgreSQL's backends did during the burst (bench.pgwaits)


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


async def leased(engine: AsyncEngine) -> list[tuple[int, str, str, str, int]]:
    rows = await _rows(
        engine,
        "SELECT id, kind, lease_owner, payload, attempts FROM outbox"
        " WHERE done_at IS NULL AND lease_owner IS NOT NULL AND lease_until > :now",
        now=datetime.now(UTC),
    )
    return [(int(i), str(k), str(o), str((p or {}).get("request_id", "")), int(a)) for i, k, o, p, a in rows]


async def burst(
    emulator: Emulator, url: str, engine: AsyncEngine, procs: list[Proc], key: str, n: int, concurrency: int
) -> Burst:
    out = Burst()
    router = Router(procs)
    targets = list(procs)
    killed, stop_clicking = asyncio.Event(), asyncio.Event()
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"}

    async def kill() -> None:
        killed.set()
        os.kill(procs[0].pid, signal.SIGKILL)
        out.killed_at, out.killed_after = time.time(), len(out.accepted)
        router.live.remove(procs[0])
        targets.remove(procs[0])
        out.leased = await leased(engine)  # the dead replica's leases are frozen from here on

    async def ask(http: aiohttp.ClientSession, i: int) -> None:
        async with gate:
            target = targets[i % len(targets)]
            body = {"action": "process_refund", "params": {"amount": 900, "currency": "EUR", "order_id": f"F-{i}"}}
            try:
                async with http.post(target.url + "/v1/requests", json=body, headers=headers) as resp:
                    if resp.status != 202:
                        raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                    out.accepted[(await resp.json())["id"]] = procs.index(target)
            except aiohttp.ClientError:
                return  # in flight at the kill: not accepted, nothing promised
            if len(out.accepted) >= n // 2 and not killed.is_set():
                await kill()

    async def click(ts: str, user: str) -> None:
        try:
            delivery = await emulator.click(user, channel=CHANNEL, action_id=ActionId.APPROVE, message_ts=ts)
        except InteractionError:
            out.no_button.append(ts)  # decided (or expired) before the click: reported, not a crash
            return
        if delivery.ok:
            replica = router.routed.get(delivery.headers.get("X-Slack-Signature", ""))
            where = procs.index(replica) if replica is not None else -1
            out.acked.append((ts, user, delivery.latency or 0.0, where))
        else:
            out.unacked += 1

    async def reviewers() -> None:
        channel = emulator.workspace.resolve_channel(CHANNEL)
        assert channel is not None
        clicked: set[str] = set()
        clicks: list[asyncio.Task[None]] = []
        version = 0
        while not stop_clicking.is_set() and not emulator.core.closing:
            for m in channel.top_level():
                if m.ts not in clicked:
                    clicked.add(m.ts)
                    clicks.append(asyncio.create_task(click(m.ts, REVIEWERS[len(clicked) % len(REVIEWERS)])))
            version = await emulator.wait_changed(version, 0.05)
        await asyncio.gather(*clicks)

    async with router.serving() as events_url:
        emulator.config.bot_url = events_url
        clicking = asyncio.create_task(reviewers())
        try:
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(connector=connector) as http, PgWaits(url) as waits:
                await asyncio.gather(*(ask(http, i) for i in range(n)))
            out.waits = waits.summary()
            await _until(lambda: _has_cards(emulator, out.accepted), out.killed_at + 120)
            await _recovered(engine, out, out.killed_at + 120)
            stop_clicking.set()
            await clicking
        finally:
            clicking.cancel()
        await _until_drained(engine, time.time() + 30)
    return out


def _cards(emulator: Emulator) -> dict[str, list[str]]:
    """Card ts per request id, from the channel."""
    channel = emulator.workspace.resolve_channel(CHANNEL)
    assert channel is not None
    found: dict[str, list[str]] = {}
    for m in channel.top_level():
        if match := CARD_ID.search(message_text(m)):
            found.setdefault(match.group(1), []).append(m.ts)
    return found


async def _has_cards(emulator: Emulator, accepted: dict[str, int]) -> bool:
    return set(accepted) <= set(_cards(emulator))


async def _until(check: Any, deadline: float) -> bool:
    while time.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def _recovered(engine: AsyncEngine, out: Burst, deadline: float) -> None:
    ids = [i for i, *_ in out.leased]

    async def done() -> bool:
        if not ids:
            return True
        rows = await _rows(engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL AND id = ANY(:ids)", ids=ids)
        return rows[0][0] == 0

    await _until(done, deadline)


async def _until_drained(engine: AsyncEngine, deadline: float) -> None:
    async def drained() -> bool:
        rows = await _rows(engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL AND failed_at IS NULL")
        return rows[0][0] == 0

    await _until(drained, deadline)


async def report(emulator: Emulator, engine: AsyncEngine, out: Burst, n: int, latency: float) -> str:
    ids = [i for i, *_ in out.leased]
    items = await _rows(engine, "SELECT id, attempts, done_at FROM outbox WHERE id = ANY(:ids)", ids=ids)
    state = {int(i): (int(a), d) for i, a, d in items}
    # Which lease owner was the dead replica's worker: a live worker acknowledges what it leased (same
    # attempt count, done); the dead one's items were attempted again once their lease ran out, or are
    # still undone.
    stuck = Counter(owner for i, _, owner, _, attempts in out.leased if state[i][0] > attempts or state[i][1] is None)
    dead_owner = stuck.most_common(1)[0][0] if stuck else None
    dead = [row for row in out.leased if row[2] == dead_owner]
    live = [row for row in out.leased if row[2] != dead_owner]
    kinds = Counter(kind.rsplit(".", 1)[-1] for _, kind, *_ in dead)
    cards = _cards(emulator)
    card_delays = []
    before_kill = never_posted = 0
    for _, kind, _, request_id, _ in dead:
        if kind != "slack.post_card":
            continue
        if request_id not in cards:
            never_posted += 1
            continue
        delay = float(min(cards[request_id])) - out.killed_at
        before_kill += delay <= 0
        card_delays.append(max(0.0, delay))
    missing_cards = [r for r in out.accepted if r not in cards]

    def delivered_after(item: int) -> float | None:
        at = state[item][1]
        return None if at is None else at.replace(tzinfo=UTC).timestamp() - out.killed_at

    done_delays = [d for i, *_ in dead if (d := delivered_after(i)) is not None]
    # A card in Slack is recorded (so its updates and thread notes can find it) when its item is delivered.
    recorded = [d for i, kind, *_ in dead if kind == "slack.post_card" and (d := delivered_after(i)) is not None]
    undone = sum(1 for i, *_ in dead if state[i][1] is None)

    channel = emulator.workspace.resolve_channel(CHANNEL)
    assert channel is not None
    duplicate_cards = sum(1 for tss in cards.values() if len(tss) > 1)
    duplicate_notes = 0
    for tss in cards.values():
        for ts in tss:
            notes = Counter(m.text for m in channel.replies(ts))
            duplicate_notes += sum(c - 1 for c in notes.values() if c > 1)
    existing = {str(r) for (r,) in await _rows(engine, "SELECT id FROM request")}
    lost_requests = [r for r in out.accepted if r not in existing]
    votes = {(str(r), str(u)) for r, u in await _rows(engine, "SELECT request_id, user_id FROM vote")}
    by_ts = {ts: r for r, tss in cards.items() for ts in tss}
    lost_clicks = [(ts, u, s, r) for ts, u, s, r in out.acked if (by_ts.get(ts), u) not in votes]
    late = sum(1 for *_, s, _ in out.acked if s >= ACK_BUDGET)
    lost_late = sum(1 for *_, s, _ in lost_clicks if s >= ACK_BUDGET)
    lost_dead = sum(1 for *_, r in lost_clicks if r == 0)
    left = (await _rows(engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL"))[0][0]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    worst_card = max(card_delays, default=0.0)
    delivered = max(done_delays, default=float("nan"))
    rows = [
        ("review requests accepted", f"{len(out.accepted)} of {n} (kill after {out.killed_after})", "", ""),
        ("outbox items leased at the kill", f"{len(dead)} by the dead replica, {len(live)} by the live one", "", ""),
        ("  the dead replica's, by kind", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none", "", ""),
        (
            "  its cards: already in Slack at the kill",
            f"{before_kill} of {len(card_delays) + never_posted} ({never_posted} never posted)",
            "",
            "",
        ),
        (
            "  its cards: in Slack after the kill, at most",
            f"{worst_card:.1f} s",
            f"<= {TARGET_SECONDS:.0f} s",
            verdict(worst_card <= TARGET_SECONDS and not never_posted) if card_delays else "none held",
        ),
        ("  its cards: recorded by the survivor, at most", f"{max(recorded, default=0.0):.1f} s", "", ""),
        ("  all its items delivered after", f"{delivered:.1f} s ({undone} never)", "", ""),
        ("accepted requests lost", str(len(lost_requests)), "0", verdict(not lost_requests)),
        ("accepted requests without a card", str(len(missing_cards)), "0", verdict(not missing_cards)),
        ("cards posted twice", str(duplicate_cards), "0", verdict(duplicate_cards == 0)),
        ("thread notes posted twice", str(duplicate_notes), "0", verdict(duplicate_notes == 0)),
        (
            "acknowledged clicks not counted",
            f"{len(lost_clicks)} of {len(out.acked)} ({out.unacked} not acknowledged,"
            f" {len(out.no_button)} cards decided before their click)",
            "0",
            verdict(not lost_clicks),
        ),
        (
            f"  acknowledged at the {ACK_BUDGET:g} s budget, before the vote",
            f"{late} ({lost_late} of them lost; {lost_dead} lost were the dead one's)",
            "",
            "",
        ),
        ("outbox items left undone at the end", str(left), "0", verdict(left == 0)),
    ]
    lines = [
        f"\nfailover: 2 replicas, {n} review requests, replica 1 killed with SIGKILL mid-burst;"
        f" chat.postMessage answers {latency * 1000:.0f} ms late",
        f"| {'figure':<46} | {'measured':<44} | {'target':>7} | {'':<8} |",
        f"|{'-' * 48}|{'-' * 46}|{'-' * 9}|{'-' * 10}|",
    ]
    lines += [f"| {a:<46} | {b:<44} | {c:>7} | {d:<8} |" for a, b, c, d in rows]
    acks = sorted(s for *_, s, _ in out.acked)
    if acks:
        p50, p99 = acks[len(acks) // 2], acks[min(len(acks) - 1, round(0.99 * (len(acks) - 1)))]
        lines.append(f"\nclick -> Slack's ack: p50 {p50:.2f} s, p99 {p99:.2f} s, max {acks[-1]:.2f} s")
    lines.append(f"PostgreSQL backends during the burst, on average (bench.pgwaits): {out.waits}")
    return "\n".join(lines)


async def run(emulator: Emulator, server: str, n: int, concurrency: int, latency: float, logs: Path) -> str:
    if latency:
        emulator.faults.fail_next("chat.postMessage", error=None, delay=latency, times=None)
    async with postgres_database(server) as url:
        engine = create_engine(url)
        try:
            async with services(emulator, url, 2, logs, bench_manifests()) as (procs, key):
                out = await burst(emulator, url, engine, procs, key, n, concurrency)
                return await report(emulator, engine, out, n, latency)
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--postgres", default=os.environ.get(POSTGRES_ENV) or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--burst", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--slack-latency", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    async def go() -> None:
        logs = Path(tempfile.mkdtemp(prefix="cs-failover-"))
        async with running_emulator(EmulatorConfig(), load_seed(bench_manifests())) as emulator:
            print(await run(emulator, args.postgres, args.burst, args.concurrency, args.slack_latency, logs))
        print(f"logs in {logs}")

    asyncio.run(go())


if __name__ == "__main__":
    main()
