"""Audit sinks: where ``bot.service.auditstream`` hands sealed audit events (docs/audit-streaming.md).

- :mod:`bot.auditsink.http`: batches of JSON lines POSTed to a SIEM's collector.
- :mod:`bot.auditsink.rotating`: JSON lines appended to a local file, rotated by size.
"""

from __future__ import annotations

import aiohttp

from bot.auditsink.http import AUDIT_SINK_TIMEOUT, HttpSink
from bot.auditsink.rotating import RotatingFileSink
from bot.config import Settings
from bot.service.auditstream import Sink

__all__ = ["AUDIT_SINK_TIMEOUT", "HttpSink", "RotatingFileSink", "audit_sink"]


def audit_sink(settings: Settings, http: aiohttp.ClientSession) -> Sink | None:
    """The sink ``COUNTERSIGN_AUDIT_SINK`` names (already checked by :class:`Settings`), or None."""
    url = settings.audit_sink
    if url is None:
        return None
    if url.scheme == "file":
        assert url.path is not None  # Settings refuses a file URL without a path
        return RotatingFileSink(
            str(url), url.path, max_bytes=settings.audit_sink_max_bytes, backups=settings.audit_sink_backups
        )
    token = settings.audit_sink_token.get_secret_value() if settings.audit_sink_token else None
    return HttpSink(str(url), http, token=token)
