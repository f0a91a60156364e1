"""`countersign audit verify TENANT` and `countersign audit export TENANT [--format jsonl|csv] [--since X]`.

``--since`` takes a sequence number (``--since 1200``: events with seq >= 1200) or an ISO
8601 date or datetime (``--since 2025-01-31``, ``--since 2025-01-31T09:30:00Z``; a time
without a zone is UTC): events at or after it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.cli.db import add_database_url, database_url, fail, migrated_engine
from bot.config import ConfigError
from store import StoreError, TenantUnknown, export, make_sessionmaker, uow, verify
from store.audit import VerifyResult

CSV_COLUMNS = ("tenant", "seq", "at", "kind", "request_id", "actor", "payload", "prev_hash", "hash")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("audit", help="verify or export a tenant's audit chain")
    commands = parser.add_subparsers(dest="audit_command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser("verify", help="recompute the hash chain; exit 1 at the first broken link")
    check.add_argument("tenant")
    add_database_url(check)
    check.set_defaults(func=_verify)

    out = commands.add_parser("export", help="stream the chain as JSON lines or CSV")
    out.add_argument("tenant")
    out.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    out.add_argument("--since", metavar="SEQ|DATE", help="a seq number, or an ISO date/datetime (UTC if no zone)")
    add_database_url(out)
    out.set_defaults(func=_export)


def parse_since(value: str) -> tuple[int | None, datetime | None]:
    """``(since_seq, since_at)`` from the ``--since`` text.

    Raises:
        ValueError: neither a positive integer nor an ISO date/datetime.
    """
    if value.isdigit():
        return int(value), None
    at = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    return None, at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _verify(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_run_verify(database_url(args), args.tenant))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    print(f"{args.tenant}: {result.describe()}")
    return 0 if result.ok else 1


async def _run_verify(url: str, tenant: str) -> VerifyResult:
    async with migrated_engine(url) as engine:
        await _check_tenant(engine, tenant)
        return await verify(engine, tenant)


def _export(args: argparse.Namespace) -> int:
    try:
        since_seq, since_at = parse_since(args.since) if args.since else (None, None)
    except ValueError:
        return fail(f"--since {args.since!r}: give a seq number or an ISO date/datetime")
    try:
        count = asyncio.run(_run_export(database_url(args), args.tenant, args.format, since_seq, since_at, sys.stdout))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    print(f"exported {count} events", file=sys.stderr)
    return 0


async def _run_export(
    url: str, tenant: str, fmt: str, since_seq: int | None, since_at: datetime | None, out: TextIO
) -> int:
    count = 0
    async with migrated_engine(url) as engine:
        await _check_tenant(engine, tenant)
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        async for event in export(engine, tenant, since_seq=since_seq, since_at=since_at):
            row = event.as_dict()
            if writer is None:
                out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            else:
                row["payload"] = json.dumps(row["payload"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                writer.writerow([row[c] for c in CSV_COLUMNS])
            count += 1
    out.flush()
    return count


async def _check_tenant(engine: Any, tenant: str) -> None:
    async with uow(make_sessionmaker(engine), read_only=True) as tx:
        if await tx.tenants.get(tenant) is None:
            raise TenantUnknown(f"unknown tenant {tenant!r}")
