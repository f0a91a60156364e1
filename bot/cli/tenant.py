"""`countersign tenant key create|revoke|list TENANT`, `countersign tenant callback-secret TENANT` and
`countersign tenant receipt-key rotate|list TENANT`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bot.cli.db import add_database_url, database_url, fail, migrated_engine
from bot.cli.manifests import add_manifests, require_tenant
from bot.config import ConfigError
from store import StoreError, make_sessionmaker, uow
from store.tenants import check_name
from store.uow import Tx


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("tenant", help="tenant API keys and callback secret")
    commands = parser.add_subparsers(dest="tenant_command", metavar="COMMAND")
    commands.required = True

    key = commands.add_parser("key", help="agent API keys")
    key_commands = key.add_subparsers(dest="key_command", metavar="COMMAND")
    key_commands.required = True
    create = key_commands.add_parser("create", help="create a key; printed once, alone on the last line")
    create.add_argument("tenant")
    create.add_argument(
        "--name", help="which agent holds it (e.g. refund-bot): shown on its requests' cards and in the audit"
    )
    create.set_defaults(func=_key_create)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id, prefix or the key itself")
    revoke.add_argument("tenant")
    revoke.add_argument("key", metavar="KEY_ID|PREFIX|KEY")
    revoke.set_defaults(func=_key_revoke)
    listing = key_commands.add_parser("list", help="list the tenant's keys (never the keys themselves)")
    listing.add_argument("tenant")
    listing.set_defaults(func=_key_list)

    secret = commands.add_parser("callback-secret", help="print the callback signing secret (created on first ask)")
    secret.add_argument("tenant")
    secret.set_defaults(func=_callback_secret)

    receipt = commands.add_parser("receipt-key", help="the Ed25519 keys decision receipts are signed with")
    receipt_commands = receipt.add_subparsers(dest="receipt_key_command", metavar="COMMAND")
    receipt_commands.required = True
    rotate = receipt_commands.add_parser(
        "rotate", help="sign with a new key from now on; the old one stays listed until its receipts expire"
    )
    rotate.add_argument("tenant")
    rotate.set_defaults(func=_receipt_key_rotate)
    receipt_list = receipt_commands.add_parser("list", help="list the tenant's receipt keys (public halves)")
    receipt_list.add_argument("tenant")
    receipt_list.set_defaults(func=_receipt_key_list)

    for parser_ in (create, revoke, listing, secret, rotate, receipt_list):
        add_database_url(parser_)
    for parser_ in (create, secret):
        add_manifests(parser_)


# One command's work in one unit of work; returns the lines to print.
Action = Callable[[Tx, datetime], Awaitable[list[str]]]


def _run(args: argparse.Namespace, action: Action) -> int:
    try:
        if hasattr(args, "manifests"):  # the commands that create something for the tenant
            require_tenant(check_name(args.tenant), args.manifests)
        lines = asyncio.run(_with_store(database_url(args), action))
    except (ConfigError, StoreError) as exc:
        return fail(str(exc), 1)
    for line in lines:
        print(line)
    return 0


async def _with_store(url: str, action: Action) -> list[str]:
    async with migrated_engine(url) as engine, uow(make_sessionmaker(engine)) as tx:
        return await action(tx, datetime.now(UTC))


def _key_create(args: argparse.Namespace) -> int:
    async def action(tx: Tx, now: datetime) -> list[str]:
        await tx.tenants.ensure(args.tenant, now=now)
        issued = await tx.tenants.create_api_key(args.tenant, now=now, actor="cli", name=args.name)
        named = f", agent {args.name!r}" if args.name else ""
        return [
            f"created API key {issued.id} for tenant {issued.tenant} (prefix {issued.prefix}{named})",
            "it is shown once and stored hashed; keep it now:",
            issued.key,
        ]

    return _run(args, action)


def _key_revoke(args: argparse.Namespace) -> int:
    async def action(tx: Tx, now: datetime) -> list[str]:
        key = await tx.tenants.revoke_api_key(args.tenant, args.key, now=now, actor="cli")
        what = f"API key {key.id} (prefix {key.prefix}) of tenant {args.tenant}"
        if key.revoked_at is not None and key.revoked_at != now:
            return [f"{what} was already revoked {_when(key.revoked_at)}"]
        return [f"revoked {what}"]

    return _run(args, action)


def _key_list(args: argparse.Namespace) -> int:
    async def action(tx: Tx, now: datetime) -> list[str]:
        await tx.tenants.get_or_raise(args.tenant)
        keys = await tx.tenants.list_api_keys(args.tenant)
        if not keys:
            return [f"tenant {args.tenant} has no API keys"]
        lines = [f"{'ID':<32}  {'PREFIX':<8}  {'CREATED':<20}  {'STATUS':<28}  NAME"]
        for key in keys:
            status = "active" if key.revoked_at is None else f"revoked {_when(key.revoked_at)}"
            lines.append(f"{key.id:<32}  {key.prefix:<8}  {_when(key.created_at):<20}  {status:<28}  {key.name or ''}")
        return lines

    return _run(args, action)


def _callback_secret(args: argparse.Namespace) -> int:
    async def action(tx: Tx, now: datetime) -> list[str]:
        await tx.tenants.ensure(args.tenant, now=now)
        return [await tx.tenants.callback_secret(args.tenant, now=now)]

    return _run(args, action)


def _receipt_key_rotate(args: argparse.Namespace) -> int:
    from bot.service.receipts import new_signing_key

    async def action(tx: Tx, now: datetime) -> list[str]:
        await tx.tenants.get_or_raise(args.tenant)
        key = await new_signing_key(tx, args.tenant, now=now, actor="cli")
        return [f"tenant {args.tenant} now signs receipts with key {key.kid} (public key {key.public_key})",
                "the keys before it stay listed at GET /v1/keys until the receipts they signed expire"]  # fmt: skip

    return _run(args, action)


def _receipt_key_list(args: argparse.Namespace) -> int:
    async def action(tx: Tx, now: datetime) -> list[str]:
        await tx.tenants.get_or_raise(args.tenant)
        keys = await tx.receipts.keys([args.tenant], now=now, listed_only=False)
        if not keys:
            return [f"tenant {args.tenant} has no receipt key yet (made on first need)"]
        lines = [f"{'KID':<28}  {'CREATED':<20}  {'STATUS':<40}  PUBLIC KEY"]
        for key in keys:
            if key.retired_at is None:
                status = "signing"
            else:
                until = key.valid_until or key.retired_at
                status = f"retired, {'listed until' if until > now else 'unlisted since'} {_when(until)}"
            lines.append(f"{key.kid:<28}  {_when(key.created_at):<20}  {status:<40}  {key.public_key}")
        return lines

    return _run(args, action)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
