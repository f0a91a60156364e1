"""`countersign audit verify TENANT [--anchor SEQ:HASH] [--anchor-file FILE] [--max-unsealed SECONDS]`,
`countersign audit export TENANT [--format jsonl|csv] [--since X]` and `countersign audit seal`.

``--since`` takes a sequence number (``--since 1200``: events with seq >= 1200) or an ISO
8601 date or datetime (``--since 2025-01-31``, ``--since 2025-01-31T09:30:00Z``; a time
without a zone is UTC): events at or after it.

A verified chain prints its head, then an anchor line (``acme: anchor 12:<64 hex>``). Kept
outside the database (write-once storage, another system's log), those lines let a later
``verify --anchor-file`` notice what the database alone cannot: the tail cut off and the head
row rewritten to match, or history rewritten with every hash recomputed. The reserved system
chain (``.system``: refused Slack requests) is verified and exported like a tenant's.

Events are sealed into the chain by the running service's sequencer shortly after they commit.
Verify counts those not sealed yet and says how old the oldest is; with ``--max-unsealed`` it
exits 1 and names those older than that (the sequencer is stopped, or something keeps it from
sealing them). ``audit seal`` seals what is waiting now, for a database no service is running on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import re
import sys
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.cli import auditquery
from bot.cli.db import add_database_url, database_url, fail, migrated_engine, require_existing
from bot.config import ConfigError
from store import StoreError, TenantUnknown, export, make_sessionmaker, uow
from store.audit import (
    ANCHOR_HASH,
    CSV_COLUMNS,
    SYSTEM_CHAIN,
    AuditRecord,
    Sequencer,
    UnsealedEvent,
    VerifyResult,
    csv_row,
    json_line,
    unsealed_events,
    verify_anchored,
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("audit", help="verify, export or query a tenant's audit chain")
    commands = parser.add_subparsers(dest="audit_command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser("verify", help="recompute the hash chain; exit 1 at the first broken link")
    check.add_argument("tenant")
    check.add_argument(
        "--anchor", action="append", default=[], metavar="SEQ:HASH",
        help="a link an earlier verify printed; exit 1 unless the chain still has it (repeatable)",
    )  # fmt: skip
    check.add_argument(
        "--anchor-file", action="append", default=[], metavar="FILE",
        help="the output of earlier verify runs: their anchor lines for this tenant are checked (repeatable)",
    )  # fmt: skip
    check.add_argument(
        "--max-unsealed", type=seconds, metavar="SECONDS",
        help="exit 1 and name the events left unsealed longer than this (default: only report them)",
    )  # fmt: skip
    add_database_url(check)
    check.set_defaults(func=_verify)

    seal = commands.add_parser("seal", help="seal every event waiting to be sealed, in every chain")
    add_database_url(seal)
    seal.set_defaults(func=_seal)

    out = commands.add_parser("export", help="stream the chain as JSON lines or CSV")
    out.add_argument("tenant")
    out.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    out.add_argument("--since", metavar="SEQ|DATE", help="a seq number, or an ISO date/datetime (UTC if no zone)")
    add_database_url(out)
    out.set_defaults(func=_export)

    auditquery.register(commands)


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def parse_since(value: str) -> tuple[int | None, datetime | None]:
    """``(since_seq, since_at)`` from the ``--since`` text.

    Raises:
        ValueError: neither a positive integer nor an ISO date/datetime.
    """
    if value.isdigit():
        return int(value), None
    at = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    return None, at.replace(tzinfo=UTC) if at.tzinfo is None else at


# An anchor, as given to --anchor or as a line of an anchor file (what verify prints, or SEQ:HASH alone).
ANCHOR_LINE = re.compile(r"(?:(?P<tenant>\S+): anchor )?(?P<seq>\d+):(?P<hash>\S+)")
# Any other line verify prints ("acme: ok: ...", "acme: gap: ..."): skipped in an anchor file.
VERIFY_LINE = re.compile(r"\S+: (?!anchor ).*")


def parse_anchor(text: str) -> tuple[str | None, int, str]:
    """``(tenant or None, seq, hash)`` from ``SEQ:HASH`` or ``TENANT: anchor SEQ:HASH``.

    Raises:
        ValueError: anything else, or a hash that is not 12 to 64 hex digits.
    """
    match = ANCHOR_LINE.fullmatch(text.strip())
    if match is None or not ANCHOR_HASH.fullmatch(match["hash"]):
        raise ValueError(f"{text.strip()!r} is not an anchor: write SEQ:HASH (12 to 64 hex digits of the hash)")
    return match["tenant"], int(match["seq"]), match["hash"].lower()


def read_anchors(tenant: str, given: list[str], files: list[str]) -> dict[int, str]:
    """The anchors to check: every ``--anchor``, and the anchor lines of each file naming ``tenant``.

    An anchor file holds the output of earlier verify runs, perhaps of several tenants: other
    tenants' lines and verify's other lines are skipped, but a file with no anchor for this
    tenant is an error (checking nothing must not look like a pass), as is a seq anchored to
    two different hashes.

    Raises:
        ValueError: a malformed anchor or line, a file without an anchor for the tenant, a conflict.
        OSError: a file cannot be read.
    """
    found: list[tuple[str, int, str]] = []
    for text in given:
        named, seq, digest = parse_anchor(text)
        if named not in (None, tenant):
            raise ValueError(f"--anchor {text.strip()!r} is an anchor of {named}, not {tenant}")
        found.append(("--anchor", seq, digest))
    for name in files:
        with open(name, encoding="utf-8") as lines:
            mine = 0
            for number, line in enumerate(lines, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    named, seq, digest = parse_anchor(line)
                except ValueError:
                    if VERIFY_LINE.fullmatch(line.strip()):
                        continue
                    raise ValueError(f"{name}:{number}: not an anchor nor a line of verify's output") from None
                if named is None or named == tenant:
                    found.append((f"{name}:{number}", seq, digest))
                    mine += 1
            if not mine:
                raise ValueError(f"{name}: no anchor for {tenant}")
    anchors: dict[int, str] = {}
    for where, seq, digest in found:
        known = anchors.setdefault(seq, digest)
        if not (known.startswith(digest) or digest.startswith(known)):
            raise ValueError(f"{where}: seq {seq} is anchored to two different hashes")
        anchors[seq] = max(known, digest, key=len)
    return anchors


# How many events left unsealed too long verify names, at most.
NAMED_UNSEALED = 20


def _verify(args: argparse.Namespace) -> int:
    try:
        anchors = read_anchors(args.tenant, args.anchor, args.anchor_file)
    except (ValueError, OSError) as exc:
        return fail(str(exc))
    try:
        url = database_url(args)
        require_existing(url)
        result, stale, named = asyncio.run(_run_verify(url, args.tenant, anchors, args.max_unsealed))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    print(f"{args.tenant}: {result.describe()}")
    if result.unsealed and result.oldest_unsealed is not None:
        age = (datetime.now(UTC) - result.oldest_unsealed).total_seconds()
        print(
            f"{args.tenant}: {result.unsealed} event(s) not sealed yet, the oldest at "
            f"{result.oldest_unsealed.isoformat()} ({age:.1f} s ago)"
        )
    if stale:
        print(f"{args.tenant}: {stale} event(s) unsealed for longer than {args.max_unsealed:g} s:")
        for event in named:
            print(f"{args.tenant}: {event.describe()}")
        if stale > len(named):
            print(f"{args.tenant}: and {stale - len(named)} more")
    if not result.ok:
        return 1
    if anchors:
        print(f"{args.tenant}: {len(anchors)} anchor(s) hold, up to seq {max(anchors)}")
    # The full head hash, for an anchor file: the first line shows only 12 digits of it.
    print(f"{args.tenant}: anchor {result.events}:{result.head_hash}")
    return 1 if stale else 0


async def _run_verify(
    url: str, tenant: str, anchors: dict[int, str], max_unsealed: float | None
) -> tuple[VerifyResult, int, list[UnsealedEvent]]:
    async with migrated_engine(url) as engine:
        await _check_tenant(engine, tenant)
        result = await verify_anchored(engine, tenant, anchors)
        if max_unsealed is None:
            return result, 0, []
        before = datetime.now(UTC) - timedelta(seconds=max_unsealed)
        stale, named = await unsealed_events(engine, tenant, before=before, limit=NAMED_UNSEALED)
        return result, stale, named


def _seal(args: argparse.Namespace) -> int:
    try:
        sealed = asyncio.run(_run_seal(database_url(args)))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    print(f"sealed {sealed} events")
    return 0


async def _run_seal(url: str) -> int:
    async with migrated_engine(url) as engine:
        return await Sequencer(engine, now=lambda: datetime.now(UTC)).seal_once()


def _export(args: argparse.Namespace) -> int:
    try:
        since_seq, since_at = parse_since(args.since) if args.since else (None, None)
    except ValueError:
        return fail(f"--since {args.since!r}: give a seq number or an ISO date/datetime")
    try:
        url = database_url(args)
        require_existing(url)
        count = asyncio.run(_run_export(url, args.tenant, args.format, since_seq, since_at, sys.stdout))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc))
    except BrokenPipeError:
        # `countersign audit export … | head`: the reader had enough; not an error. Python would
        # complain again flushing stdout at exit, so it is pointed at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
        # Closed here if a write fails (`| head` stopped reading): left to asyncio.run's shutdown, the
        # export's open snapshot ends in tracebacks on stderr.
        records = export(engine, tenant, since_seq=since_seq, since_at=since_at)
        async with contextlib.aclosing(cast("AsyncGenerator[AuditRecord, None]", records)) as events:
            async for event in events:
                if writer is None:
                    out.write(json_line(event) + "\n")
                else:
                    writer.writerow(csv_row(event))
                count += 1
    out.flush()
    return count


async def _check_tenant(engine: AsyncEngine, tenant: str) -> None:
    if tenant == SYSTEM_CHAIN:
        return  # created with its first event: until then an empty chain, not an unknown tenant
    async with uow(make_sessionmaker(engine), read_only=True) as tx:
        if await tx.tenants.get(tenant) is None:
            raise TenantUnknown(f"unknown tenant {tenant!r}")
