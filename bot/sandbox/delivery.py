"""Delivering to the bot as Slack does: signed POSTs, the 3-second ack window, and a record of each."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from bot.sandbox.core import Core
from bot.sandbox.workspace import JSON

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"


def sign(signing_secret: str, timestamp: int, body: str) -> str:
    """``v0=hex(hmac_sha256(secret, "v0:{ts}:{body}"))``, as slack_sdk.signature computes it."""
    digest = hmac.new(signing_secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


@dataclass
class Delivery:
    """One request the emulator sent to the bot, and how the bot answered.

    ``error`` is what Slack would show the user: ``operation_timeout`` (no answer within the ack window),
    ``dispatch_failed`` (non-200, refused connection), ``no_bot`` (nothing configured to deliver to) or
    a problem with the ack body (``invalid_ack``).
    """

    kind: str  # block_actions | view_submission | view_closed | slash_command | event_callback
    user: str
    payload: JSON
    body: str
    headers: dict[str, str]
    sent_at: float
    status: int | None = None
    ack_body: str = ""
    ack_content_type: str = ""
    latency: float | None = None
    error: str | None = None
    detail: str = ""
    effects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def late(self) -> bool:
        return self.error == "operation_timeout"

    def ack_json(self) -> JSON | None:
        if not self.ack_body.strip():
            return None
        try:
            value = json.loads(self.ack_body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def summary(self) -> JSON:
        return {
            "kind": self.kind,
            "user": self.user,
            "status": self.status,
            "latency_ms": None if self.latency is None else round(self.latency * 1000),
            "error": self.error,
            "detail": self.detail,
            "ack": self.ack_body[:2000],
        }


class Deliverer:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post(self, *, kind: str, user: str, payload: JSON, body: str, content_type: str) -> Delivery:
        # Wall time, not the emulator's clock: Bolt checks the timestamp against its own clock (±5 min),
        # and tests that move the emulator's clock past trigger or response_url expiry must still get through.
        timestamp = int(time.time())
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": sign(self.core.config.signing_secret, timestamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        delivery = Delivery(kind, user, payload, body, headers, self.core.clock.now())
        self.core.deliveries.append(delivery)
        url = self.core.config.bot_url
        if not url:
            delivery.error, delivery.detail = "no_bot", "service not running: no bot URL is configured"
            self.core.touch()
            return delivery
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout = aiohttp.ClientTimeout(total=self.core.config.ack_timeout)
        try:
            async with self._client().post(url, data=body.encode(), headers=headers, timeout=timeout) as resp:
                delivery.status = resp.status
                delivery.ack_content_type = resp.headers.get("Content-Type", "")
                delivery.ack_body = await resp.text()
        except TimeoutError:
            delivery.error = "operation_timeout"
            delivery.detail = f"no answer within {self.core.config.ack_timeout:g} s"
        except aiohttp.ClientError as exc:
            delivery.error, delivery.detail = "dispatch_failed", f"service not running at {url} ({exc})"
        delivery.latency = loop.time() - started
        if delivery.error is None and delivery.status != 200:
            delivery.error = "dispatch_failed"
            delivery.detail = f"HTTP {delivery.status}: {delivery.ack_body[:200]}"
        if delivery.error:
            log.warning("delivery of %s failed: %s %s", kind, delivery.error, delivery.detail)
        self.core.touch()
        return delivery
