"""`countersign policy versions|export|diff TENANT`: a tenant's stored policy versions, read from the database.

The service records a version whenever the manifest it serves differs from the tenant's latest one
(bot.service.policyversions). ``export`` prints a version's manifest as stored, to commit back to
git; ``diff`` compares two. The database is only read: not even migrated.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bot.cli.db import add_database_url, database_url, display_url, fail, require_existing
from bot.config import ConfigError
from store import StoreError, create_engine, current_revision, make_sessionmaker, uow
from store.models import PolicyVersion

# The first schema revision holding policy versions (revisions are zero-padded numbers, so they compare).
POLICY_VERSIONS_REVISION = "0011"


class Refused(Exception):
    """Something the person asked for does not exist: one line, exit 2."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("policy", help="a tenant's policy versions: list, export, diff")
    commands = parser.add_subparsers(dest="policy_command", metavar="COMMAND")
    commands.required = True

    versions = commands.add_parser("versions", help="every policy version of a tenant, oldest first")
    versions.add_argument("tenant")
    add_database_url(versions)
    versions.set_defaults(func=_versions)

    export = commands.add_parser("export", help="print a policy version's manifest (YAML), to commit back to git")
    export.add_argument("tenant")
    export.add_argument("--version", type=int, metavar="N", dest="number", help="this version (default: the latest)")
    add_database_url(export)
    export.set_defaults(func=_export)

    diff = commands.add_parser("diff", help="a unified diff between two policy versions of a tenant")
    diff.add_argument("tenant")
    diff.add_argument("v1", type=int, metavar="V1")
    diff.add_argument("v2", type=int, metavar="V2")
    add_database_url(diff)
    diff.set_defaults(func=_diff)


def _versions(args: argparse.Namespace) -> int:
    return _run(args, _listing)


def _export(args: argparse.Namespace) -> int:
    def show(rows: Sequence[PolicyVersion]) -> str:
        row = _pick(rows, args.tenant, args.number) if args.number is not None else rows[-1]
        return row.manifest if row.manifest.endswith("\n") else row.manifest + "\n"

    return _run(args, show)


def _diff(args: argparse.Namespace) -> int:
    def show(rows: Sequence[PolicyVersion]) -> str:
        old, new = _pick(rows, args.tenant, args.v1), _pick(rows, args.tenant, args.v2)
        lines = difflib.unified_diff(
            old.manifest.splitlines(keepends=True),
            new.manifest.splitlines(keepends=True),
            fromfile=_label(args.tenant, old),
            tofile=_label(args.tenant, new),
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    return _run(args, show)


def _run(args: argparse.Namespace, show: Callable[[Sequence[PolicyVersion]], str]) -> int:
    try:
        url = database_url(args)
        require_existing(url)
        rows = asyncio.run(_read(url, args.tenant))
        sys.stdout.write(show(rows))
    except (ConfigError, StoreError, Refused) as exc:
        return fail(str(exc))
    sys.stdout.flush()
    return 0


async def _read(url: str, tenant: str) -> Sequence[PolicyVersion]:
    """Every version of ``tenant``, oldest first. Raises Refused: no such tenant, or no version yet."""
    engine = create_engine(url)
    try:
        revision = await current_revision(engine)
        if revision is None:
            raise ConfigError(f"{display_url(url)} holds no countersign database (run `countersign db upgrade`)")
        if revision < POLICY_VERSIONS_REVISION:
            raise ConfigError(
                f"{display_url(url)} predates policy versions (revision {revision}): run `countersign db upgrade`"
            )
        async with uow(make_sessionmaker(engine), read_only=True) as tx:
            if await tx.tenants.get(tenant) is None:
                raise Refused(f"unknown tenant {tenant!r}")
            rows = await tx.policy_versions.history(tenant)
    finally:
        await engine.dispose()
    if not rows:
        raise Refused(f"tenant {tenant!r} has no policy version yet (the service records one when it starts)")
    return rows


def _pick(rows: Sequence[PolicyVersion], tenant: str, number: int) -> PolicyVersion:
    for row in rows:
        if row.number == number:
            return row
    raise Refused(f"tenant {tenant!r} has no policy version {number} (versions 1 to {rows[-1].number})")


def _who(row: PolicyVersion) -> str:
    if row.proposed_by or row.approved_by:
        return f"proposed by {row.proposed_by or '?'}, approved by {row.approved_by or '?'}"
    return row.file or "-"


def _label(tenant: str, row: PolicyVersion) -> str:
    """A diff side's header: the version, its source, who and when."""
    return f"{tenant} version {row.number} ({row.source}, {_who(row)}, {row.created_at:%Y-%m-%dT%H:%M:%SZ})"


def _listing(rows: Sequence[PolicyVersion]) -> str:
    table = [("version", "source", "created (UTC)", "by", "sha256", "note")]
    table += [
        (str(r.number), r.source, f"{r.created_at:%Y-%m-%d %H:%M:%S}", _who(r), r.sha256[:12], r.note or "")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1] + "\n"
        for row in table
    )
