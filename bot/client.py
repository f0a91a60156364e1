"""A small client for agents: ask Countersign before acting.

Importable without Slack: it needs only the standard library (sync) and aiohttp (async).

    from bot.client import Countersign, require_approval

    cs = Countersign("http://127.0.0.1:3000", api_key="cs_...")

    @require_approval(cs, "process_refund")
    def refund(amount: int, customer_id: str) -> str: ...

    refund(amount=620, customer_id="4411")   # blocks until a human decides; raises Rejected on no

For async actions (``blocking: false`` in the manifest) the decorated function runs at once
and the request's id is remembered with the undo handler; the agent's callback endpoint
hands Countersign's POST to ``CallbackReceiver.handle``, which checks the signature and runs
the undo handler if a human rejects.

A call refused with 429 (the API key's or the tenant's rate limit) is retried after the
``Retry-After`` the service sends, at most ``max_retries`` times and only while that wait is
within ``max_retry_wait`` seconds; then ``RateLimited`` is raised. Retrying is safe for every
call, creating ones included: a refused call recorded nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import inspect
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

FINAL = {"auto_approved", "denied", "approved", "rejected", "expired", "cancelled"}
APPROVED = {"auto_approved", "approved"}


def approved(request: Mapping[str, Any]) -> bool:
    """Whether the agent may go ahead: approved, or expired with ``on_timeout: approve``."""
    if request.get("status") in APPROVED:
        return True
    return request.get("status") == "expired" and (request.get("decision") or {}).get("outcome") == "approved"


SIGNATURE_HEADER = "X-Countersign-Signature"


class CountersignError(Exception):
    """The API answered with an error (``code`` and ``message`` from its JSON error body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Unreachable(CountersignError):
    """No answer at all: the service is down, the URL is wrong, or the call timed out."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(0, "unreachable", f"no answer from {url} ({reason})")
        self.url = url


class RateLimited(CountersignError):
    """429: over the API key's or the tenant's rate limit; the call may succeed ``retry_after`` seconds later."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(429, code, message)
        self.retry_after = retry_after


class Rejected(Exception):
    """A human (or the policy, or a timeout) said no. ``request`` is the request resource."""

    def __init__(self, request: Mapping[str, Any]) -> None:
        decision = request.get("decision") or {}
        super().__init__(
            f"{request.get('action')} was {request.get('status')}: {decision.get('reason') or 'no reason'}"
        )
        self.request = request


def _body(action: str, params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action, "params": dict(params)}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


@dataclass
class _Client:
    base_url: str
    api_key: str
    timeout: float = 75.0
    max_retries: int = 3  # 429s retried per call
    max_retry_wait: float = 30.0  # seconds: a longer Retry-After is raised at once

    def _pause(self, refused: RateLimited, retries: int) -> float:
        """How long to wait before retrying a call refused ``retries + 1`` times; raises when it should not be."""
        if retries >= self.max_retries:
            raise RateLimited(
                refused.code, f"{refused.message} (still refused after {retries} retries)", refused.retry_after
            )
        if refused.retry_after > self.max_retry_wait:
            raise RateLimited(
                refused.code,
                f"{refused.message} (longer than max_retry_wait, {self.max_retry_wait:g} s)",
                refused.retry_after,
            )
        return refused.retry_after


@dataclass
class Countersign(_Client):
    """Synchronous client (standard library only)."""

    sleep: Callable[[float], object] = field(default=time.sleep, repr=False)

    def _call(self, method: str, path: str, body: Any = None, wait: int = 0) -> dict[str, Any]:
        retries = 0
        while True:
            try:
                return self._send(method, path, body, wait)
            except RateLimited as refused:
                self.sleep(self._pause(refused, retries))
                retries += 1

    def _send(self, method: str, path: str, body: Any, wait: int) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        if wait:
            headers["Prefer"] = f"wait={min(wait, 60)}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read(), exc.headers.get("Retry-After")) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Unreachable(self.base_url, getattr(exc, "reason", exc)) from exc

    def request(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: int = 0,
    ) -> dict[str, Any]:
        """Create a request; with ``wait`` the answer waits up to that many seconds for a decision."""
        body = _body(action, params, context=context, idempotency_key=idempotency_key, callback_url=callback_url)
        return self._call("POST", "/v1/requests", body, wait)

    def get(self, request_id: str, *, wait: int = 0) -> dict[str, Any]:
        return self._call("GET", f"/v1/requests/{request_id}", wait=wait)

    def cancel(self, request_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/requests/{request_id}/cancel", {})

    def wait_for_decision(self, request: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Long-poll until the request is decided (or ``timeout`` seconds pass)."""
        current = dict(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        while current["status"] not in FINAL and (left := _poll_seconds(deadline)) > 0:
            current = self.get(current["id"], wait=left)
        return current


@dataclass
class AsyncCountersign(_Client):
    """asyncio client (aiohttp)."""

    sleep: Callable[[float], Awaitable[object]] = field(default=asyncio.sleep, repr=False)

    async def _call(self, method: str, path: str, body: Any = None, wait: int = 0) -> dict[str, Any]:
        retries = 0
        while True:
            try:
                return await self._send(method, path, body, wait)
            except RateLimited as refused:
                await self.sleep(self._pause(refused, retries))
                retries += 1

    async def _send(self, method: str, path: str, body: Any, wait: int) -> dict[str, Any]:
        import aiohttp  # only the async client needs it

        headers = {"Authorization": f"Bearer {self.api_key}"}
        if wait:
            headers["Prefer"] = f"wait={min(wait, 60)}"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, self.base_url.rstrip("/") + path, json=body, headers=headers) as resp,
            ):
                raw = await resp.read()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(self.base_url, exc) from exc
        if status >= 400:
            raise _error(status, raw, retry_after)
        result: dict[str, Any] = json.loads(raw)
        return result

    async def request(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: int = 0,
    ) -> dict[str, Any]:
        body = _body(action, params, context=context, idempotency_key=idempotency_key, callback_url=callback_url)
        return await self._call("POST", "/v1/requests", body, wait)

    async def get(self, request_id: str, *, wait: int = 0) -> dict[str, Any]:
        return await self._call("GET", f"/v1/requests/{request_id}", wait=wait)

    async def cancel(self, request_id: str) -> dict[str, Any]:
        return await self._call("POST", f"/v1/requests/{request_id}/cancel", {})

    async def wait_for_decision(self, request: Mapping[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        current = dict(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        while current["status"] not in FINAL and (left := _poll_seconds(deadline)) > 0:
            current = await self.get(current["id"], wait=left)
        return current


def _poll_seconds(deadline: float | None) -> int:
    """How long the next long poll may wait: the server's 60 s cap, or what is left before ``deadline``."""
    return 60 if deadline is None else int(min(60, deadline - time.monotonic()))


def _error(status: int, raw: bytes, retry_after: str | None = None) -> CountersignError:
    try:
        err = json.loads(raw)["error"]
        code, message = err["code"], err["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", raw.decode(errors="replace")[:200]
    if status == 429:
        return RateLimited(code, message, _seconds(retry_after))
    return CountersignError(status, code, message)


def _seconds(retry_after: str | None) -> float:
    """``Retry-After`` in seconds (what the service sends); 1 s when absent or an HTTP date."""
    try:
        seconds = float(retry_after or "")
    except ValueError:
        return 1.0
    return seconds if 0 <= seconds < math.inf else 1.0


def verify_signature(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Check a callback's signature and that it is fresh (within ``tolerance`` seconds of ``now``)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class CallbackReceiver:
    """Runs the undo handler registered for an async request when Countersign reports a rejection."""

    secret: str
    pending: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)

    def register(self, request_id: str, on_rejected: Callable[[dict[str, Any]], Any]) -> None:
        self.pending[request_id] = on_rejected

    def handle(self, body: bytes, signature: str, *, now: float | None = None) -> dict[str, Any]:
        """Verify and act on one callback; returns the request resource. Raises ValueError if unsigned."""
        request, undo = self._open(body, signature, now)
        if undo is not None:
            undo(request)
        return request

    async def handle_async(self, body: bytes, signature: str, *, now: float | None = None) -> dict[str, Any]:
        """``handle`` for undo handlers that are coroutine functions: awaits them."""
        request, undo = self._open(body, signature, now)
        if undo is not None:
            result = undo(request)
            if inspect.isawaitable(result):
                await result
        return request

    def _open(
        self, body: bytes, signature: str, now: float | None
    ) -> tuple[dict[str, Any], Callable[[dict[str, Any]], Any] | None]:
        """The verified request, and its undo handler if it was not approved (handed out once)."""
        if not verify_signature(self.secret, signature, body, now=time.time() if now is None else now):
            raise ValueError("bad or stale Countersign signature")
        request: dict[str, Any] = json.loads(body)
        handler = self.pending.pop(request["id"], None)
        return request, handler if handler is not None and not approved(request) else None


def require_approval(
    client: Countersign,
    action: str,
    *,
    receiver: CallbackReceiver | None = None,
    callback_url: str | None = None,
    on_rejected: Callable[[dict[str, Any]], Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Gate a function behind Countersign; its keyword arguments are the request's params.

    Sync actions block until decided, then run (approved) or raise ``Rejected``. Async actions
    run at once; if a human later rejects, ``on_rejected`` runs via ``receiver``.
    """

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            request = client.request(action, dict(kwargs), context=context, callback_url=callback_url, wait=60)
            if request["status"] == "pending" and request["mode"] == "async":
                if receiver is not None and on_rejected is not None:
                    receiver.register(request["id"], on_rejected)
                return fn(*args, **kwargs)
            decided = client.wait_for_decision(request, timeout=timeout)
            if not approved(decided):
                raise Rejected(decided)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def require_approval_async(
    client: AsyncCountersign,
    action: str,
    *,
    receiver: CallbackReceiver | None = None,
    callback_url: str | None = None,
    on_rejected: Callable[[dict[str, Any]], Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """``require_approval`` for coroutine functions and ``AsyncCountersign``."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            request = await client.request(action, dict(kwargs), context=context, callback_url=callback_url, wait=60)
            if request["status"] == "pending" and request["mode"] == "async":
                if receiver is not None and on_rejected is not None:
                    receiver.register(request["id"], on_rejected)
                return await fn(*args, **kwargs)
            decided = await client.wait_for_decision(request, timeout=timeout)
            if not approved(decided):
                raise Rejected(decided)
            return await fn(*args, **kwargs)

        return wrapper

    return decorate
