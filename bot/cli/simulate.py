"""`countersign simulate TENANT --manifest NEW.yaml [--since 7d] [--format text|json]`.

Replays the tenant's stored requests of the window through the manifest given (the pure policy: no
card, no audit event, nothing written) and reports, per action, the requests that would have gone
another way than they did (auto-approved, denied, another pool, more or fewer approvals), and per
pool the cards before and after, with the decision time p95 the pool's recorded history leads to
expect. The database is only read: not even migrated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.cli.db import add_database_url, database_url, display_url, fail, require_existing
from bot.config import ConfigError
from bot.service.simulation import simulate_window
from policy import TenantPolicy, load_text
from policy.durations import parse_duration
from policy.simulation import Simulation
from store import StoreError, create_engine, current_revision, make_sessionmaker


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("simulate", help="what a manifest would have done to a tenant's recent requests")
    parser.add_argument("tenant")
    parser.add_argument("--manifest", required=True, type=Path, metavar="FILE", help="the candidate manifest")
    parser.add_argument("--since", default="7d", metavar="DURATION", help="how far back (default 7d; e.g. 24h, 30d)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_database_url(parser)
    parser.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        return fail(f"--since: {exc}")
    try:
        text = args.manifest.read_text(encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot read {args.manifest}: {exc.strerror or exc}")
    candidate, problems = load_text(text, file=str(args.manifest), default_tenant=args.tenant)
    if candidate is None:
        return fail("the manifest does not load:\n" + "\n".join(str(p) for p in problems if p.severity == "error"))
    if candidate.tenant != args.tenant:
        return fail(f"{args.manifest} is the manifest of tenant {candidate.tenant!r}, not {args.tenant!r}")
    until = datetime.now(UTC)
    try:
        url = database_url(args)
        require_existing(url)
        result = asyncio.run(_run(url, candidate, until - window, until))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    if args.format == "json":
        print(json.dumps(as_json(result, until - window, until), indent=2))
    else:
        print(as_text(result, str(args.manifest), args.since, window))
    return 0


async def _run(url: str, candidate: TenantPolicy, since: datetime, until: datetime) -> Simulation:
    engine = create_engine(url)
    try:
        if await current_revision(engine) is None:
            raise ConfigError(f"{display_url(url)} holds no countersign database (run `countersign db upgrade`)")
        return await simulate_window(make_sessionmaker(engine), candidate, since=since, until=until)
    finally:
        await engine.dispose()


def as_json(result: Simulation, since: datetime, until: datetime) -> dict[str, Any]:
    return {
        "tenant": result.tenant,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "requests": result.requests,
        "unchanged": result.unchanged,
        "cards_added": result.cards_added,
        "cards_removed": result.cards_removed,
        "newly_denied": result.newly_denied,
        "approved_now_auto": result.approved_now_auto,
        "changes": [
            {
                "action": c.action,
                "kind": c.kind,
                "before": str(c.before),
                "after": str(c.after),
                "count": c.count,
                "examples": list(c.examples),
            }
            for c in result.changes
        ],
        "pools": [
            {
                "pool": p.pool,
                "cards_before": p.cards_before,
                "cards_after": p.cards_after,
                "decision_p95_seconds": p.decision_p95_seconds,
            }
            for p in result.pools
        ],
    }


def as_text(result: Simulation, manifest: str, since: str, window: timedelta) -> str:
    lines = [f"{result.tenant}: {manifest} replayed on {result.requests} requests of the last {since}"]
    if not result.requests:
        return lines[0] + ": nothing to compare"
    lines.append(f"  {result.headline(window / timedelta(days=1))}")
    lines.append(f"  unchanged: {result.unchanged}")
    if result.changes:
        lines.append("")
        lines.append("Would change (per action):")
        width = max(len(c.action) for c in result.changes)
        for c in result.changes:
            seen = ", ".join(c.examples)
            lines.append(f"  {c.action:<{width}}  {c.count:>6}  {c.before} -> {c.after}   e.g. {seen}")
    if result.pools:
        lines.append("")
        lines.append("Cards per pool:      before   after   decision p95 (recorded)")
        for p in result.pools:
            p95 = _duration(p.decision_p95_seconds) if p.decision_p95_seconds is not None else "no decisions"
            lines.append(f"  {p.pool:<16} {p.cards_before:>8} {p.cards_after:>7}   {p95}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
