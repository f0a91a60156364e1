"""Logging: plain lines, or one JSON object a line, each carrying the tenant and request id in scope."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

_tenant: ContextVar[str | None] = ContextVar("countersign_tenant", default=None)
_request: ContextVar[str | None] = ContextVar("countersign_request_id", default=None)


@contextlib.contextmanager
def log_context(*, tenant: str | None = None, request_id: str | None = None) -> Iterator[None]:
    """Every log line in this block (and tasks it starts) names this tenant and request."""
    tokens = [_tenant.set(tenant) if tenant else None, _request.set(request_id) if request_id else None]
    try:
        yield
    finally:
        for var, token in zip((_tenant, _request), tokens, strict=True):
            if token is not None:
                var.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        tenant, request_id = _tenant.get(), _request.get()
        record.tenant, record.request_id = tenant, request_id
        # For plain lines: " [tenant request]" where there is one, nothing where there is none.
        scope = " ".join(v for v in (tenant, request_id) if v)
        record.scope = f" [{scope}]" if scope else ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("tenant", "request_id"):
            if value := getattr(record, key, None):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# Libraries whose loggers are held at ``libraries`` (below INFO, Bolt logs refused requests whole).
LIBRARIES = ("slack_bolt", "slack_sdk", "aiohttp", "sqlalchemy", "aiosqlite", "asyncpg", "apscheduler", "alembic")


def configure(*, json_lines: bool, level: int = logging.INFO, libraries: str = "WARNING") -> None:
    """Set up the root logger once, at the edge (``countersign serve``); libraries log at ``libraries``."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s%(scope)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(libraries)
