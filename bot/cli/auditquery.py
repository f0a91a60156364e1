"""`countersign audit query TENANT [--action A] [--by USER] [--outcome O] [--since 7d|DATE] [--limit N]
[--format json|csv]`: the sealed chain filtered as ``/hitl audit`` filters it, newest first."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.cli.db import add_database_url, database_url, fail, require_existing
from bot.commands.audit import since_of
from bot.commands.parse import CommandError
from bot.config import ConfigError
from policy import Status
from store import StoreError, TenantUnknown, create_engine, make_sessionmaker, uow
from store.audit import CSV_COLUMNS, AuditFilter, csv_row, json_line, query_audit

PAGE = 500


def register(commands: argparse._SubParsersAction[Any]) -> None:
    query = commands.add_parser("query", help="the chain filtered by action, person, outcome and time, newest first")
    query.add_argument("tenant")
    query.add_argument("--action", help="events of requests of this action")
    query.add_argument("--by", metavar="USER", help="events of this actor (a Slack user id such as U0BEN)")
    query.add_argument(
        "--outcome", choices=[s.value for s in Status if s is not Status.PENDING],
        help="events of requests decided so (an expired request matches what its timeout decided too)",
    )  # fmt: skip
    query.add_argument("--since", metavar="DURATION|DATE", help="7d, 24h, ... or an ISO date/datetime (UTC if no zone)")
    query.add_argument("--limit", type=int, metavar="N", help="at most N events (default: all)")
    query.add_argument("--format", choices=("json", "csv"), default="json", help="json: one object per line")
    add_database_url(query)
    query.set_defaults(func=_query)


def _query(args: argparse.Namespace) -> int:
    try:
        since = since_of(args.since, datetime.now(UTC)) if args.since else None
    except CommandError as exc:  # the same words as /hitl audit's
        return fail(f"--since: {exc.message}")
    if args.limit is not None and args.limit < 1:
        return fail("--limit: give 1 or more")
    where = AuditFilter(
        action=args.action, actor=args.by, outcome=Status(args.outcome) if args.outcome else None, since=since
    )
    try:
        url = database_url(args)
        require_existing(url)
        count = asyncio.run(_run(url, args.tenant, where, args.limit, args.format, sys.stdout))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    except BrokenPipeError:  # `… | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"{count} events", file=sys.stderr)
    return 0


async def _run(url: str, tenant: str, where: AuditFilter, limit: int | None, fmt: str, out: TextIO) -> int:
    engine = create_engine(url)
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    count, before = 0, None
    try:
        sessionmaker = make_sessionmaker(engine)
        async with uow(sessionmaker, read_only=True) as tx:
            if await tx.tenants.get(tenant) is None:
                raise TenantUnknown(f"unknown tenant {tenant!r}")
        while limit is None or count < limit:
            size = PAGE if limit is None else min(PAGE, limit - count)
            async with uow(sessionmaker, read_only=True) as tx:
                page = await query_audit(tx.session, tenant, where, limit=size, before=before)
            for event in page.events:
                if writer is None:
                    out.write(json_line(event) + "\n")
                else:
                    writer.writerow(csv_row(event))
            count += len(page.events)
            if page.older is None:
                break
            before = page.older
    finally:
        await engine.dispose()
    out.flush()
    return count
