"""A Web API call's arguments (query, form or JSON, merged) and Slack's error answers and cursors."""

from __future__ import annotations

import base64
import binascii
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.sandbox.workspace import JSON


class ApiError(Exception):
    """A Slack error answer: HTTP 200 ``{"ok": false, "error": code, ...extra}`` unless ``status`` says else."""

    def __init__(self, error: str, *, status: int = 200, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.extra = extra


def invalid_arguments(*messages: str) -> ApiError:
    return ApiError("invalid_arguments", response_metadata={"messages": [f"[ERROR] {m}" for m in messages]})


def arg_str(args: JSON, key: str, *, required: bool = False) -> str:
    value = args.get(key)
    if value is None or value == "":
        if required:
            raise invalid_arguments(f"missing required field: {key}")
        return ""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


def arg_bool(args: JSON, key: str) -> bool:
    value = args.get(key)
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true"))


def arg_json(args: JSON, key: str) -> Any:
    """``blocks``/``view``: an array/object in a JSON body, a JSON-encoded string in a form body."""
    value = args.get(key)
    if isinstance(value, str):
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError("invalid_blocks_format" if key == "blocks" else "invalid_arguments") from None
    return value


def arg_metadata(args: JSON) -> JSON | None:
    """Message ``metadata``: an object (a JSON-encoded string in a form body) with a string ``event_type``
    and an object ``event_payload``; Slack keeps those two keys."""
    value = args.get("metadata")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError("invalid_metadata_format") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_metadata_format")
    event_type, event_payload = value.get("event_type"), value.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(event_payload, dict):
        raise ApiError("invalid_metadata_schema")
    return {"event_type": event_type, "event_payload": event_payload}


def arg_limit(args: JSON, *, maximum: int = 1000) -> int:
    try:
        limit = int(arg_str(args, "limit") or 100)
    except ValueError:
        raise ApiError("invalid_limit") from None
    if limit < 1 or limit > maximum:
        raise ApiError("invalid_limit")
    return limit


def ts_micros(ts: str) -> int:
    """A message timestamp (``"1503435956.000247"``) as whole microseconds: exact, unlike a float."""
    return int(Decimal(ts) * 1_000_000)


def arg_ts(args: JSON, key: str, *, default: int) -> int:
    """``oldest``/``latest`` in microseconds; Slack answers ``invalid_ts_oldest``/``invalid_ts_latest``."""
    value = arg_str(args, key)
    if not value:
        return default
    try:
        return ts_micros(value)
    except (InvalidOperation, ValueError, OverflowError):
        raise ApiError(f"invalid_ts_{key}") from None


def decode_cursor(cursor: str) -> tuple[str, str]:
    """A cursor's ``(kind, value)``: Slack's cursors are base64 of ``kind:value``."""
    try:
        kind, _, value = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiError("invalid_cursor") from None
    return kind, value


def arg_next_ts(args: JSON) -> int | None:
    """The ts (microseconds) a ``next_ts:`` cursor names, as conversations.history and .replies page;
    None without a cursor."""
    cursor = arg_str(args, "cursor")
    if not cursor:
        return None
    kind, value = decode_cursor(cursor)
    if kind != "next_ts" or not value.isdigit():
        raise ApiError("invalid_cursor")
    return int(value)


def encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def paginate(items: list[str], args: JSON, label: str) -> tuple[list[str], str]:
    """Slack cursor pagination: an opaque cursor naming the next item, ``""`` after the last page."""
    limit = arg_limit(args)
    start = 0
    cursor = arg_str(args, "cursor")
    if cursor:
        kind, item = decode_cursor(cursor)
        if kind != label or item not in items:
            raise ApiError("invalid_cursor")
        start = items.index(item)
    page = items[start : start + limit]
    rest = items[start + limit :]
    return page, encode_cursor(label, rest[0]) if rest else ""
