"""`countersign receipt verify FILE|-`: check, offline, that a receipt approves this exact action and params now.

The receipt is read from FILE (``-``: standard input), alone or inside a request resource
(``decision.receipt``). The public keys come from ``--keys FILE`` (the JSON of ``GET /v1/keys``, or a
list of such keys), else from the database. Exit 0 when the receipt holds, 1 when it does not (each
check on its own line), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.cli.db import add_database_url, database_url, fail, migrated_engine, require_existing
from bot.config import ConfigError
from bot.service.receipt_format import GO_AHEAD, PublicKey, ReceiptInvalid, unb64url, verify
from store import StoreError, make_sessionmaker, uow

ALL_OUTCOMES = frozenset({"approved", "auto_approved", "rejected", "denied", "cancelled"})


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("receipt", help="signed decision receipts")
    commands = parser.add_subparsers(dest="receipt_command", metavar="COMMAND")
    commands.required = True
    check = commands.add_parser("verify", help="check a receipt against the action and params about to run")
    check.add_argument("file", metavar="FILE|-", help="a receipt, or a request resource holding decision.receipt")
    check.add_argument("--action", help="the action about to run (default: --params FILE's 'action')")
    given = check.add_mutually_exclusive_group(required=True)
    given.add_argument("--params", metavar="FILE", help='JSON file: the params, or {"action": ..., "params": ...}')
    given.add_argument("--params-json", metavar="JSON", help="the params as a JSON object")
    check.add_argument("--keys", metavar="FILE", help="the JSON of GET /v1/keys (offline); default: the database's")
    check.add_argument("--tenant", help="refuse a receipt of any other tenant")
    check.add_argument("--now", metavar="TIME", help="check as of this RFC 3339 time (default: now)")
    check.add_argument(
        "--any-outcome", action="store_true", help="accept a receipt of any decision (default: approved only)"
    )
    add_database_url(check)
    check.set_defaults(func=_verify)


def _load(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text)


def _receipt_of(document: Any) -> Any:
    if isinstance(document, dict) and "payload" not in document and "decision" in document:
        decision = document.get("decision") or {}
        if not decision.get("receipt"):
            raise ConfigError("the request resource has no decision.receipt (not decided, or not sealed yet)")
        return decision["receipt"]
    return document


def _action_and_params(args: argparse.Namespace) -> tuple[str, Any]:
    if args.params_json is not None:
        params = json.loads(args.params_json)
        action = args.action
    else:
        params = _load(args.params)
        action = args.action
        if isinstance(params, dict) and set(params) == {"action", "params"}:
            action, params = action or params["action"], params["params"]
    if not action:
        raise ConfigError("say which action is about to run: --action, or a --params file of {action, params}")
    if not isinstance(params, dict):
        raise ConfigError("the params must be a JSON object")
    return str(action), params


def keys_from_json(document: Any) -> dict[str, PublicKey]:
    """``{"keys": [...]}`` (GET /v1/keys) or a bare list of its keys, by kid."""
    listed = document.get("keys") if isinstance(document, dict) else document
    if not isinstance(listed, list):
        raise ConfigError('the keys file holds no "keys" list (save the answer of GET /v1/keys)')
    keys = {}
    for entry in listed:
        try:
            keys[str(entry["kid"])] = PublicKey(str(entry["kid"]), entry.get("tenant"), unb64url(entry["public_key"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"a key in the keys file is not {{kid, public_key}}: {exc}") from exc
    return keys


async def _keys_from_store(url: str) -> dict[str, PublicKey]:
    async with migrated_engine(url) as engine, uow(make_sessionmaker(engine), read_only=True) as tx:
        views = await tx.receipts.keys(None, now=datetime.now(UTC), listed_only=False)
    return {k.kid: PublicKey(k.kid, k.tenant, unb64url(k.public_key)) for k in views}


def _verify(args: argparse.Namespace) -> int:
    try:
        receipt = _receipt_of(_load(args.file))
        action, params = _action_and_params(args)
        if args.keys:
            keys = keys_from_json(_load(args.keys))
        else:
            url = database_url(args)
            require_existing(url)
            keys = asyncio.run(_keys_from_store(url))
        now = datetime.now(UTC) if args.now is None else datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        if now.tzinfo is None:
            raise ConfigError("--now needs a time zone (e.g. 2026-01-01T10:00:00Z)")
    except (OSError, ValueError, ConfigError, StoreError) as exc:
        return fail(str(exc), 2)
    outcomes = ALL_OUTCOMES if args.any_outcome else GO_AHEAD
    try:
        payload = verify(receipt, keys=keys, action=action, params=params, now=now, tenant=args.tenant,
                         outcomes=outcomes)  # fmt: skip
    except ReceiptInvalid as exc:
        print(f"refused: {exc.code}: {exc.message}")
        return 1
    what = f"{payload['outcome']} {payload['action']} for tenant {payload['tenant']}"
    print(f"ok: {what} (request {payload['request_id']})")
    print(f"ok: signed by key {receipt['kid']}; params match (params_sha256 {payload['params_sha256'][:16]}…)")
    print(f"ok: decided by {', '.join(payload['deciders'])}; audit seq {payload['audit_seq']};"
          f" policy {payload['policy_version']}")  # fmt: skip
    print(f"ok: valid until {payload['expires_at']}")
    return 0
