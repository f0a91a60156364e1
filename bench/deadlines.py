"""How late deadlines fire with 100k requests pending, and what that costs in memory.

    python -m bench.deadlines [--pending 100000] [--rate 100 | --due 2000] [--window 20]
                              [--postgres SERVER_URL] [--replicas 1]

``--pending`` requests wait in SQLite (with ``--postgres``, in a new database on that server);
``--rate`` a second of them (or ``--due`` in all) fall due evenly during the next ``--window``
seconds, the rest days later. The real scheduler (APScheduler wake-ups plus the sweep) fires
them; each expires (its action has one pool), so each firing decides a request. Lateness is
measured twice: when the firing claimed the stage (``fired_at``, the keeper's clock) and when
its transaction had committed (the after-commit ``decided`` signal, what a long-polling agent or
the outbox worker can see at the earliest), each minus when it was due. Baseline, measured in
the same run: bare asyncio timers (``loop.call_at``) for the same moments, the floor of any
in-process scheduler. ``--replicas N`` runs N keepers, each with its own engine and scheduler,
in this one process (on PostgreSQL: N service replicas sharing the work, and this process's
CPU); "fired twice" counts expiries beyond one per stage.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, func, insert, select, text, update

from bench.intake import postgres_database
from bot.clock import SystemClock
from bot.policyset import PolicySet
from bot.scheduler import DeadlineScheduler
from bot.service.deadlines import DeadlineKeeper
from bot.service.signals import Signals
from bot.service.transitions import Transitions
from policy import Mode, Status, params_sha256
from store._sql import table_of
from store.engine import create_engine, make_sessionmaker
from store.migrate import upgrade
from store.models import AuditEvent, AuditUnsealed, Request, RequestStage
from store.pools import PoolSeed
from store.uow import uow

MANIFEST = """
tenant: bench
pools: {first: {channel: C0FIRST, members: [U0ONE]}}
actions: {deploy: {reviewer_pool: first, timeout: 1d}}
"""


class StampedSignals(Signals):
    """Signals that note when each request's decision was announced (after its commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.decided_at: dict[str, float] = {}

    def decided(self, request_id: str) -> None:
        self.decided_at[request_id] = time.time()
        super().decided(request_id)


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


async def baseline(moments: list[float]) -> list[float]:
    loop = asyncio.get_running_loop()
    late: list[float] = []
    done = asyncio.Event()
    offset = time.time() - loop.time()

    def fire(at: float) -> None:
        late.append(time.time() - at)
        if len(late) == len(moments):
            done.set()

    for at in moments:
        loop.call_at(at - offset, fire, at)
    await done.wait()
    return late


async def run(
    pending: int, due: int, window: float, postgres: str | None = None, replicas: int = 1
) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    (directory / "manifests").mkdir()
    (directory / "manifests" / "bench.yaml").write_text(MANIFEST)
    if postgres is None:
        return await measure(f"sqlite+aiosqlite:///{directory / 'bench.db'}", directory, pending, due, window, replicas)
    async with postgres_database(postgres) as url:
        return await measure(url, directory, pending, due, window, replicas)


async def measure(url: str, directory: Path, pending: int, due: int, window: float, replicas: int) -> dict[str, float]:
    engine = create_engine(url)
    await upgrade(engine)
    sessionmaker = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with uow(sessionmaker) as tx:
        await tx.tenants.ensure("bench", now=now)
        await tx.pools.seed_from_manifest("bench", {"first": PoolSeed(channel="C0FIRST", members=("U0ONE",))}, now=now)
    t0 = time.perf_counter()
    start = now + timedelta(seconds=3)
    moments = []
    for chunk in range(0, pending, 5000):
        requests, stages = [], []
        for n in range(chunk, min(chunk + 5000, pending)):
            deadline = start + timedelta(seconds=window * n / due) if n < due else now + timedelta(days=2, seconds=n)
            if n < due:
                moments.append(deadline.timestamp())
            rid = f"r{n:07d}"
            requests.append({
                "id": rid, "tenant": "bench", "action": "deploy", "params": {"n": n},
                "params_sha256": params_sha256("deploy", {"n": n}), "context": {}, "sensitive": [],
                "status": Status.PENDING, "mode": Mode.SYNC, "approvals_required": 1, "stage": 0, "version": 0,
                "created_at": now, "updated_at": now,
            })  # fmt: skip
            stages.append(
                {
                    "request_id": rid,
                    "index": 0,
                    "pool": "first",
                    "channel": "C0FIRST",
                    "opened_at": now,
                    "deadline_at": deadline,
                }
            )
        async with uow(sessionmaker) as tx:
            await tx.session.execute(insert(Request), requests)
            await tx.session.execute(insert(RequestStage), stages)
    if engine.dialect.name == "postgresql":
        # Bulk-loaded just now, the tables have no statistics until autovacuum gets to them, and the
        # planner would join every pending request to find the due few; a live database has them.
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()
    setup = time.perf_counter() - t0

    signals = StampedSignals()
    policies = PolicySet(directory / "manifests")
    engines = [engine, *(create_engine(url) for _ in range(replicas - 1))]
    schedulers = []
    for e in engines:
        transitions = Transitions(sessionmaker=make_sessionmaker(e), policies=policies, signals=signals)
        keeper = DeadlineKeeper(sessionmaker=make_sessionmaker(e), clock=SystemClock(), transitions=transitions)
        schedulers.append(DeadlineScheduler(keeper, signals, sweep_every=timedelta(seconds=15)))
    # The baseline runs alone first (same spacing, shifted to start now), so it measures the floor
    # of this machine's event loop, not the contention with the scheduler's own work.
    first = moments[0]
    base = await baseline([time.time() + 1 + (m - first) for m in moments])
    shift = timedelta(seconds=time.time() + 1 - first)
    moved = [{"rid": f"r{n:07d}", "at": datetime.fromtimestamp(at, UTC) + shift} for n, at in enumerate(moments)]
    async with uow(sessionmaker) as tx:
        stage = table_of(RequestStage)
        await tx.session.execute(
            update(stage).where(stage.c.request_id == bindparam("rid")).values(deadline_at=bindparam("at")), moved
        )
    due_at = {m["rid"]: m["at"].timestamp() for m in moved}
    for scheduler in schedulers:
        scheduler.start()
    # Done when every due request's decision was announced (no query competes with the firing), or
    # at the latest 10 minutes after the last deadline.
    give_up = max(due_at.values()) + 600
    while len(signals.decided_at) < due and time.time() < give_up:
        await asyncio.sleep(0.25)
    for scheduler in schedulers:
        scheduler.stop()
    async with uow(sessionmaker, read_only=True) as tx:
        rows = (
            await tx.session.execute(
                select(RequestStage.deadline_at, RequestStage.fired_at).where(RequestStage.fired_at.is_not(None))
            )
        ).all()
        # Expiry events sealed into the chain or still waiting for the sequencer (none runs here).
        expired = 0
        for table in (AuditEvent, AuditUnsealed):
            query = select(func.count()).select_from(table).where(table.kind == "request.expired")
            expired += (await tx.session.execute(query)).scalar_one()
        fired_twice = expired - len(rows)
    late = [(f - d).total_seconds() for d, f in rows if f is not None]
    visible = [at - due_at[rid] for rid, at in signals.decided_at.items()]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for e in engines:
        await e.dispose()
    where = "SQLite" if engine.dialect.name == "sqlite" else "PostgreSQL"
    if replicas > 1:
        where += f", {replicas} keepers"

    print(
        f"deadline lateness: {pending:,} pending in {where}, {due:,} due over {window:.0f} s "
        f"({due / window:,.0f} a second; setup {setup:.1f} s)"
    )
    print(f"| {'case':<46} | {'p50 ms':>8} | {'p99 ms':>8} | {'max ms':>8} | {'× baseline p99':>14} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 16}|")
    b99 = pct(base, 99) * 1000
    for name, values in (
        ("baseline: bare asyncio timers (call_at)", base),
        ("countersign: claimed (fired_at)", late),
        ("countersign: committed (decision announced)", visible),
    ):
        p50, p99, mx = pct(values, 50) * 1000, pct(values, 99) * 1000, max(values) * 1000
        print(
            f"| {name:<46} | {p50:>8.1f} | {p99:>8.1f} | {mx:>8.1f} | {p99 / b99 if b99 > 0 else float('nan'):>14.1f} |"
        )
    print(
        f"\nprocess max RSS: {rss_mb:.0f} MiB; stages fired: {len(rows):,} of {due:,}, "
        f"decisions announced: {len(visible):,}, fired twice: {fired_twice}"
    )
    return {
        "p50_ms": pct(visible, 50) * 1000,
        "p99_ms": pct(visible, 99) * 1000,
        "claimed_p50_ms": pct(late, 50) * 1000,
        "claimed_p99_ms": pct(late, 99) * 1000,
        "base_p50_ms": pct(base, 50) * 1000,
        "base_p99_ms": b99,
        "rss_mb": rss_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pending", type=int, default=100_000, help="requests pending in all")
    parser.add_argument("--window", type=float, default=20.0, help="seconds over which the due ones fall due")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, help="deadlines falling due a second (default 100)")
    rate.add_argument("--due", type=int, help="deadlines falling due in all (rate x window)")
    parser.add_argument("--postgres", metavar="SERVER_URL", help="run on a new database on this PostgreSQL server")
    parser.add_argument("--replicas", type=int, default=1, help="keepers firing the same database")
    args = parser.parse_args()
    due = args.due if args.due is not None else round((args.rate or 100.0) * args.window)
    if not 0 < due <= args.pending:
        parser.error("the due deadlines must be between 1 and --pending")
    asyncio.run(run(args.pending, due, args.window, args.postgres, args.replicas))


if __name__ == "__main__":
    main()
