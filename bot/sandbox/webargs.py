"""A Web API call's arguments (query, form or JSON, merged) and Slack's error answers and cursors."""

from __future__ import annotations

import base64
import binascii
import json
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


def paginate(items: list[str], args: JSON, label: str) -> tuple[list[str], str]:
    """Slack cursor pagination: an opaque cursor naming the next item, ``""`` after the last page."""
    try:
        limit = int(arg_str(args, "limit") or 100)
    except ValueError:
        raise ApiError("invalid_limit") from None
    if limit < 1 or limit > 1000:
        raise ApiError("invalid_limit")
    start = 0
    cursor = arg_str(args, "cursor")
    if cursor:
        try:
            kind, _, item = base64.b64decode(cursor, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError("invalid_cursor") from None
        if kind != label or item not in items:
            raise ApiError("invalid_cursor")
        start = items.index(item)
    page = items[start : start + limit]
    rest = items[start + limit :]
    next_cursor = base64.b64encode(f"{label}:{rest[0]}".encode()).decode() if rest else ""
    return page, next_cursor
