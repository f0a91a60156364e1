"""Slack requests we refuse, audited in the system chain without letting a flood write per request.

What is refused, and why (:class:`Reason`):

- not from Slack: the signature is missing, its timestamp is not a number, it is stale (more
  than 5 minutes off) or it does not match. Bolt refuses these (401) before any listener sees
  the body; the reason is worked out again here with the same ``SignatureVerifier``. A body
  too broken for Bolt to parse is answered 400 before Bolt checks anything, and audited under
  its signature's reason too when that does not hold.
- from Slack but not acted on: a signed body that cannot be read (400), a signed body of a
  shape Slack never sends (400), a signed request no listener takes (404), a button that is
  not ours (``unknown_action``).

What an event keeps (:class:`RefusedRequest`): the timestamp header as sent, the team, user
and action id the body claims (when it parses; claims, not facts, for a bad signature), and
the body's length and sha256. Never the body (a forged one may carry anything) nor the
signature.

Aggregation: per reason, the first refusal is written at once; the ones that follow within
``window`` seconds are only counted, and written as one event (the count and the last
request) when the window ends, or on :meth:`RefusalLog.close` at shutdown. Reasons are a
fixed set, so however fast requests arrive the single SQLite writer sees at most one write
per reason per window. Each event's ``count`` is the number of refusals for that reason
since the previous event for that reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

# Slack's own limit (and Bolt's): a signature more than 5 minutes off is stale.
MAX_SKEW = 5 * 60
# Claimed ids and the timestamp header are attacker-chosen text: kept short.
MAX_CLAIM = 64

Sink = Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]]


class Reason(StrEnum):
    """Why a Slack request was refused (a fixed set: also the metric's label)."""

    MISSING_SIGNATURE = "missing_signature"
    BAD_TIMESTAMP = "bad_timestamp"
    STALE_SIGNATURE = "stale_signature"
    INVALID_SIGNATURE = "invalid_signature"
    UNREADABLE_BODY = "unreadable_body"
    MALFORMED_BODY = "malformed_body"
    UNHANDLED = "unhandled"
    UNKNOWN_ACTION = "unknown_action"


class RefusedRequest(BaseModel):
    """What is safe to keep of a refused request."""

    model_config = ConfigDict(frozen=True)

    timestamp: str | None
    team: str | None
    user: str | None
    action_id: str | None
    body_length: int
    body_sha256: str

    @classmethod
    def of(cls, raw_body: str | bytes, headers: Mapping[str, str], body: Mapping[str, Any] | None) -> RefusedRequest:
        """From the raw body, the headers (one value each) and the body as parsed, if it parsed."""
        raw = raw_body.encode() if isinstance(raw_body, str) else raw_body
        team, user, action_id = _claims(body or {})
        return cls(
            timestamp=_short(_header(headers, "x-slack-request-timestamp")),
            team=team,
            user=user,
            action_id=action_id,
            body_length=len(raw),
            body_sha256=hashlib.sha256(raw).hexdigest(),
        )


def first_values(headers: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Bolt's headers (a list per name) as one value per name."""
    return {name: values[0] for name, values in headers.items() if values}


def signature_problem(verifier: SignatureVerifier, raw_body: str | bytes, headers: Mapping[str, str]) -> Reason | None:
    """Why the request's signature does not hold, or None when it does (Slack's rules, as Bolt applies them)."""
    timestamp = _header(headers, "x-slack-request-timestamp")
    signature = _header(headers, "x-slack-signature")
    if not timestamp or not signature:
        return Reason.MISSING_SIGNATURE
    try:
        when = int(timestamp)
    except ValueError:
        return Reason.BAD_TIMESTAMP
    if abs(verifier.clock.now() - when) > MAX_SKEW:
        return Reason.STALE_SIGNATURE
    try:
        return None if verifier.is_valid(raw_body, timestamp, signature) else Reason.INVALID_SIGNATURE
    except TypeError:  # hmac.compare_digest refuses a signature header that is not ASCII
        return Reason.INVALID_SIGNATURE


@dataclass
class _Window:
    """One reason's aggregation state."""

    opened: float | None = None  # when the last event for this reason was written
    count: int = 0  # refusals since then, not yet written
    last: RefusedRequest | None = None
    timer: asyncio.TimerHandle | None = None


class RefusalLog:
    """Records refused Slack requests through ``sink`` (the service's audit), aggregated per reason.

    ``record`` never waits for the database: the write runs as a task, so a refused request
    is answered at once. ``flush`` writes what is pending and waits for every write;
    ``close`` does that and stops recording (the web server's cleanup calls it).
    """

    def __init__(self, sink: Sink, *, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._window = window
        self._clock = clock
        self._windows: dict[Reason, _Window] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._closed = False

    def record(self, reason: Reason, request: RefusedRequest) -> None:
        if self._closed:
            log.warning("refused Slack request while shutting down, not audited: %s %s", reason, request)
            return
        state = self._windows.setdefault(reason, _Window())
        now = self._clock()
        state.count += 1
        state.last = request
        if state.opened is None or now - state.opened >= self._window:
            self._write(reason, state)
        elif state.timer is None:
            loop = asyncio.get_running_loop()
            state.timer = loop.call_later(state.opened + self._window - now, self._window_ended, reason)

    async def flush(self) -> None:
        """Write every pending count now and wait until all writes are done."""
        for reason, state in self._windows.items():
            if state.count:
                self._write(reason, state)
        while self._writes:
            writes = list(self._writes)
            await asyncio.gather(*writes)  # _deliver logs its own errors
            self._writes.difference_update(writes)

    async def close(self) -> None:
        self._closed = True
        await self.flush()

    def _window_ended(self, reason: Reason) -> None:
        state = self._windows[reason]
        state.timer = None
        if state.count:
            self._write(reason, state)

    def _write(self, reason: Reason, state: _Window) -> None:
        assert state.last is not None
        detail = {"count": state.count, "request": state.last.model_dump()}
        state.opened, state.count, state.last = self._clock(), 0, None
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        task = asyncio.create_task(self._deliver(reason, detail))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _deliver(self, reason: Reason, detail: dict[str, Any]) -> None:
        try:
            await self._sink(reason.value, detail)
        except Exception:
            # The log line is then the only record; it is not retried (a database that cannot
            # take one write a minute has bigger problems to report).
            log.exception("could not audit refused Slack requests: %s %s", reason, detail)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _short(value: Any) -> str | None:
    return value[:MAX_CLAIM] if isinstance(value, str) else None


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _claims(body: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(team, user, action id) as the body claims them: interactions, slash commands and events."""
    team = _short(_field(body.get("team"), "id") or body.get("team_id"))
    user = _short(_field(body.get("user"), "id") or body.get("user_id") or _field(body.get("event"), "user"))
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    action_id = _short(
        _field(action, "action_id")
        or _field(body.get("view"), "callback_id")
        or body.get("command")
        or _field(body.get("event"), "type")
    )
    return team, user, action_id
