"""Audit streaming through the real service: every sealed event reaches the SIEM at least once, in
order per chain, across the sink's failures and the service's restarts; the file sink rotates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import AnyUrl, SecretStr
from sqlalchemy import func, select

from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig, Ids, ManualClock
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import SlackDriver, running_emulator, serve_app
from bot.service.auditstream import AuditStream
from store import create_engine, make_sessionmaker, uow, upgrade
from store.audit import Sequencer, backlogs
from store.models import AuditEvent, AuditUnsealed
from tests.e2e.conftest import Stack, eventually, issue_api_keys, refund, settings_for
from tests.ops.exposition import value
from tests.ops.test_health_and_metrics import get, sample

EVENT_KEYS = {"tenant", "seq", "hash", "prev_hash", "kind", "at", "actor", "request_id", "payload"}


@dataclass
class Siem:
    """A SIEM's collector: answers ``failures`` 503s, then 200s; keeps every POST it received."""

    failures: int = 0
    url: str = ""
    posts: list[tuple[int, dict[str, str], list[dict[str, Any]]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        status = 503 if len(self.posts) < self.failures else 200
        lines = (await request.read()).decode().splitlines()
        self.posts.append((status, dict(request.headers), [json.loads(line) for line in lines]))
        return web.Response(status=status)

    def accepted(self) -> list[dict[str, Any]]:
        """The events of acknowledged POSTs, in arrival order."""
        return [event for status, _, events in self.posts if status == 200 for event in events]


@asynccontextmanager
async def siem(failures: int = 0) -> AsyncIterator[Siem]:
    collector = Siem(failures=failures)
    app = web.Application()
    app.router.add_post("/ingest", collector.handle)
    async with serve_app(app) as base:
        collector.url = base + "/ingest"
        yield collector


@asynccontextmanager
async def service(db_url: str, manifests: Path, **settings: Any) -> AsyncIterator[Stack]:
    """The real service on ``db_url`` with ``settings`` over the usual test ones (an audit sink, say)."""
    async with running_emulator(
        EmulatorConfig(), load_seed(manifests), clock=ManualClock(), ids=Ids(deterministic=True)
    ) as emu:
        runtime = await Runtime.build(settings_for(emu, db_url, manifests).model_copy(update=settings))
        if runtime.auditstream is not None:  # retries and passes in milliseconds: the test does not wait out 0.5 s
            runtime.auditstream.idle = runtime.auditstream.first_backoff = 0.02
        await runtime.start(host="127.0.0.1", port=0)
        emu.config.bot_url = runtime.url + "/slack/events"
        async with aiohttp.ClientSession() as http:
            try:
                yield Stack(emu, runtime, SlackDriver(emu, timeout=10), http, await issue_api_keys(runtime))
            finally:
                await runtime.stop()


async def auto_approve(stack: Stack, count: int, prefix: str) -> None:
    for n in range(count):
        status, _ = await stack.agent().ask("process_refund", {**refund(f"{prefix}-{n}"), "amount": 5})
        assert status == 200


async def sealed_chains(stack: Stack) -> dict[str, list[tuple[int, str]]]:
    """Every chain's sealed (seq, hash), read from the table, once nothing is left to seal."""
    engine = stack.runtime.engine

    async def all_sealed() -> bool:
        async with engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(AuditUnsealed))).scalar_one() == 0

    await eventually(all_sealed, what="every event sealed")
    async with engine.connect() as conn:
        rows = (await conn.execute(select(AuditEvent.tenant, AuditEvent.seq, AuditEvent.hash))).all()
    chains: dict[str, list[tuple[int, str]]] = {}
    for tenant, seq, digest in sorted(rows):
        chains.setdefault(tenant, []).append((seq, digest))
    return chains


def first_deliveries(events: list[dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    """Per chain, (seq, hash) in the order each event first arrived (a SIEM deduping on tenant and seq)."""
    seen: set[tuple[str, int]] = set()
    chains: dict[str, list[tuple[int, str]]] = {}
    for event in events:
        if (event["tenant"], event["seq"]) not in seen:
            seen.add((event["tenant"], event["seq"]))
            chains.setdefault(event["tenant"], []).append((event["seq"], event["hash"]))
    return chains


async def test_every_sealed_event_reaches_the_siem_in_order_through_its_failures(db_url: str, manifests: Path) -> None:
    async with (
        siem(failures=3) as collector,
        service(db_url, manifests, audit_sink=AnyUrl(collector.url), audit_sink_token=SecretStr("siem-token")) as stack,
    ):
        await auto_approve(stack, 12, "S")
        chains = await sealed_chains(stack)
        assert len(chains["acme-support"]) >= 12  # one event at least for each request

        async def delivered() -> bool:
            return first_deliveries(collector.accepted()) == chains

        await eventually(delivered, what="every sealed event accepted by the SIEM, in seq order")
        assert [status for status, _, _ in collector.posts[:4]] == [503, 503, 503, 200]
        _, headers, events = collector.posts[-1]
        assert headers["Content-Type"] == "application/x-ndjson"
        assert headers["Authorization"] == "Bearer siem-token"
        assert set(events[0]) == EVENT_KEYS
        # Only the refused batches came again: each event was accepted exactly once.
        assert len(collector.accepted()) == sum(len(c) for c in chains.values())

        _, ready = await get(stack, "/readyz")
        assert '"audit_sink": "ok"' in ready
        _, metrics = await get(stack, "/metrics")
        # value(), not sample(): a missing gauge is None there, not a passing 0.
        assert value(metrics, "countersign_audit_sink_lag_events", tenant="acme-support") == 0
        assert sample(metrics, "countersign_audit_sink_failures_total") == 3


async def test_a_restarted_service_resumes_after_the_acknowledged_events(db_url: str, manifests: Path) -> None:
    async with siem() as collector:
        async with service(db_url, manifests, audit_sink=AnyUrl(collector.url)) as stack:
            await auto_approve(stack, 5, "A")
            before = await sealed_chains(stack)

            async def caught_up() -> bool:
                behind = await backlogs(stack.runtime.engine, collector.url)
                return bool(behind) and all(chain.lag == 0 for chain in behind)

            await eventually(caught_up, what="the sink's cursor at every chain's head")
        assert first_deliveries(collector.accepted()) == before
        restarted = len(collector.posts)

        # The same database and sink, a new process.
        async with service(db_url, manifests, audit_sink=AnyUrl(collector.url)) as stack:
            await auto_approve(stack, 3, "B")
            after = await sealed_chains(stack)
            new = {t: c[len(before.get(t, [])) :] for t, c in after.items() if len(c) > len(before.get(t, []))}
            assert new["acme-support"]

            async def delivered() -> bool:
                return (
                    first_deliveries(collector.accepted()[sum(len(e) for _, _, e in collector.posts[:restarted]) :])
                    == new
                )

            await eventually(delivered, what="the events sealed since the restart, in order")
    resent = [
        e
        for _, _, events in collector.posts[restarted:]
        for e in events
        if (e["seq"], e["hash"]) in before.get(e["tenant"], [])
    ]
    assert resent == []


async def test_the_file_sink_rotates_by_size_and_its_files_hold_every_event_in_order(
    db_url: str, manifests: Path, tmp_path: Path
) -> None:
    path = tmp_path / "siem" / "audit.jsonl"
    settings = {"audit_sink": AnyUrl(f"file://{path}"), "audit_sink_max_bytes": 4096, "audit_sink_backups": 100}
    async with service(db_url, manifests, **settings) as stack:
        await auto_approve(stack, 12, "F")
        chains = await sealed_chains(stack)

        def files() -> list[Path]:
            rotated = sorted(path.parent.glob("audit.jsonl.*"), key=lambda p: -int(p.suffix[1:]))
            return [*rotated, path]  # oldest first

        async def written() -> list[dict[str, Any]] | None:
            try:
                lines = [json.loads(line) for f in files() if f.exists() for line in f.read_text().splitlines()]
            except FileNotFoundError:  # rotated between the listing and the read: look again
                return None
            return lines if first_deliveries(lines) == chains else None

        lines = await eventually(written, what="every sealed event in the files, in order")
    assert len(files()) > 2, "the events fill more than two files of 4 KiB"
    assert all(f.stat().st_size <= 4096 for f in files())
    assert len(lines) == sum(len(c) for c in chains.values())  # a healthy sink: no event written twice
    assert set(lines[0]) == EVENT_KEYS


async def test_an_unconfigured_service_streams_nothing(stack: Stack) -> None:
    assert stack.runtime.auditstream is None
    assert "audit-sink" not in stack.runtime.supervisor.status()
    _, ready = await get(stack, "/readyz")
    assert "audit_sink" not in ready
    _, metrics = await get(stack, "/metrics")
    assert "countersign_audit_sink_lag_events{" not in metrics


@dataclass
class Recorder:
    """A sink that holds what it was handed, as a replica's sink would (every replica has the same URL)."""

    name: str = "https://siem.example/ingest"
    received: list[tuple[str, int]] = field(default_factory=list)

    async def send(self, lines: Sequence[str]) -> None:
        self.received += [(e["tenant"], e["seq"]) for e in map(json.loads, lines)]


async def test_one_replica_streams_and_a_standby_takes_over_after_the_cursor(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("replicas share a PostgreSQL database; on SQLite the one process streams")
    engine = create_engine(db_url)
    await upgrade(engine)
    sm = make_sessionmaker(engine)
    now = datetime(2026, 1, 1, tzinfo=UTC)

    async def seal(first: int, count: int) -> None:
        async with uow(sm) as tx:
            await tx.tenants.ensure("acme", now=now)
            for n in range(first, first + count):
                await tx.audit.append("acme", "test.event", now=now, payload={"n": n})
        await Sequencer(engine, now=lambda: now).seal_once()

    def replica(sink: Recorder) -> AuditStream:
        return AuditStream(engine, sink, now=lambda: now, metrics=Metrics(), batch=7, idle=0.01, standby=0.05)

    one, two = Recorder(), Recorder()
    tasks: list[asyncio.Task[None]] = []
    stop_one, stop_two = asyncio.Event(), asyncio.Event()
    try:
        await seal(1, 20)
        first = asyncio.create_task(replica(one).run(stop_one))
        tasks = [first]
        await eventually(lambda: _ready(len(one.received) == 20), what="the first replica streaming")
        tasks.append(asyncio.create_task(replica(two).run(stop_two)))
        await seal(21, 10)
        await eventually(lambda: _ready(len(one.received) == 30), what="the new events streamed")
        await asyncio.sleep(0.2)  # a window for the standby's tries (every 0.05 s), which must all fail
        assert two.received == []
        stop_one.set()
        await first  # its lock goes with its connection
        await seal(31, 10)
        await eventually(lambda: _ready(len(two.received) == 10), what="the standby taking over")
        assert one.received == [("acme", seq) for seq in range(1, 31)]
        assert two.received == [("acme", seq) for seq in range(31, 41)]  # after the cursor, nothing again
    finally:
        stop_one.set()
        stop_two.set()
        await asyncio.gather(*tasks)
        await engine.dispose()


async def _ready(condition: bool) -> bool:
    return condition
