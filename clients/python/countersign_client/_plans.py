"""What each client call does, written once for the sync and the async client (sans I/O).

A plan is a generator: it yields a ``Call`` and is sent the ``Reply`` (or has ``TransportFailure``
thrown into it), or yields a ``Pause`` and is resumed after it; it returns the parsed answer. The
clients only move bytes and sleep, so retries, idempotency keys and long polls live here, once.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from countersign_client.errors import ApiError, RateLimited, Unreachable
from countersign_client.models import ApprovalRequest, Question

MAX_WAIT = 60  # the service holds a long poll at most this long


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Mapping[str, Any] | None = None
    wait: int = 0  # Prefer: wait=N
    # Safe to send again after no answer: creating is (its idempotency key), reading is; cancelling is not.
    resend: bool = True


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None
    body: bytes


@dataclass(frozen=True)
class Pause:
    seconds: float


class TransportFailure(Exception):
    """Thrown into a plan when a call got no answer."""


Plan = Generator[Call | Pause, Reply | None, Any]


@dataclass(frozen=True)
class Retries:
    max_retries: int = 3  # per call, for 429s, 502-504 and calls that got no answer
    max_retry_wait: float = 30.0  # a longer Retry-After is raised at once
    backoff: float = 0.5  # first pause after no answer; doubles, with jitter


def exchange(call: Call, retries: Retries, url: str) -> Generator[Call | Pause, Reply | None, dict[str, Any]]:
    """One API call with its retries; returns the JSON body of a 2xx answer."""
    attempt = 0
    while True:
        try:
            reply = yield call
        except TransportFailure as failure:
            if not call.resend or attempt >= retries.max_retries:
                raise Unreachable(url, failure.__cause__ or failure) from failure
            yield Pause(_backoff(retries, attempt))
            attempt += 1
            continue
        assert reply is not None
        if reply.status == 429:
            refused = _error(reply)
            assert isinstance(refused, RateLimited)
            if attempt >= retries.max_retries:
                raise RateLimited(
                    refused.code, f"{refused.message} (still refused after {attempt} retries)", refused.retry_after
                )
            if refused.retry_after > retries.max_retry_wait:
                raise RateLimited(
                    refused.code,
                    f"{refused.message} (longer than max_retry_wait, {retries.max_retry_wait:g} s)",
                    refused.retry_after,
                )
            yield Pause(refused.retry_after)
            attempt += 1
            continue
        if reply.status in (502, 503, 504) and call.resend and attempt < retries.max_retries:
            yield Pause(_backoff(retries, attempt))  # a replica stopping, or a proxy with none behind it
            attempt += 1
            continue
        if reply.status >= 400:
            raise _error(reply)
        result: dict[str, Any] = json.loads(reply.body)
        return result


def create(
    action: str,
    params: Mapping[str, Any],
    *,
    context: Mapping[str, Any] | None,
    idempotency_key: str | None,
    callback_url: str | None,
    wait: float,
    retries: Retries,
    url: str,
) -> Plan:
    # One key for every attempt: a retry after a lost answer finds the request the first attempt made.
    body: dict[str, Any] = {"action": action, "params": dict(params), "idempotency_key": idempotency_key or new_key()}
    if context:
        body["context"] = dict(context)
    if callback_url:
        body["callback_url"] = callback_url
    data = yield from exchange(Call("POST", "/v1/requests", body, _poll(wait)), retries, url)
    return ApprovalRequest.from_json(data)


def get(request_id: str, *, wait: float, retries: Retries, url: str) -> Plan:
    data = yield from exchange(Call("GET", f"/v1/requests/{request_id}", None, _poll(wait)), retries, url)
    return ApprovalRequest.from_json(data)


def cancel(request_id: str, *, retries: Retries, url: str) -> Plan:
    data = yield from exchange(Call("POST", f"/v1/requests/{request_id}/cancel", {}, resend=False), retries, url)
    return ApprovalRequest.from_json(data)


def public_keys(*, retries: Retries, url: str) -> Plan:
    """``GET /v1/keys``: the tenant's receipt keys, as JSON (what ``receipts.verify_receipt`` takes)."""
    data = yield from exchange(Call("GET", "/v1/keys"), retries, url)
    return data


def decision(
    request: ApprovalRequest,
    *,
    timeout: float | None,
    retries: Retries,
    url: str,
    clock: Callable[[], float] = time.monotonic,
) -> Plan:
    """Long polls until the request is decided or ``timeout`` seconds pass; returns it as it then stands."""
    current = request
    deadline = None if timeout is None else clock() + timeout
    while not current.final:
        left = MAX_WAIT if deadline is None else math.floor(min(MAX_WAIT, deadline - clock()))
        if left <= 0:
            break
        current = yield from get(current.id, wait=left, retries=retries, url=url)
    return current


def ask_question(
    body: Mapping[str, Any],
    *,
    wait: float | None,
    retries: Retries,
    url: str,
    clock: Callable[[], float] = time.monotonic,
) -> Plan:
    """``POST /v1/questions`` (one idempotency key for every attempt), then long polls until it is answered
    or closed, or ``wait`` seconds pass (None: as long as it takes; 0: no wait)."""
    deadline = None if wait is None else clock() + wait
    first = {**body, "idempotency_key": body.get("idempotency_key") or new_key()}
    sync = first.get("mode", "sync") == "sync"
    data = yield from exchange(
        Call("POST", "/v1/questions", first, MAX_WAIT if wait is None else _poll(wait)), retries, url
    )
    current = Question.from_json(data)
    while current.pending and sync:
        left = MAX_WAIT if deadline is None else math.floor(min(MAX_WAIT, deadline - clock()))
        if left <= 0:
            break
        current = yield from get_question(current.id, wait=left, retries=retries, url=url)
    return current


def get_question(question_id: str, *, wait: float, retries: Retries, url: str) -> Plan:
    data = yield from exchange(Call("GET", f"/v1/questions/{question_id}", None, _poll(wait)), retries, url)
    return Question.from_json(data)


def cancel_question(question_id: str, *, retries: Retries, url: str) -> Plan:
    """``POST /v1/questions/{id}/cancel``: not resent after no answer, as a request's cancel."""
    call = Call("POST", f"/v1/questions/{question_id}/cancel", {}, resend=False)
    data = yield from exchange(call, retries, url)
    return Question.from_json(data)


def new_key() -> str:
    return f"cs-{uuid.uuid4().hex}"


def _poll(wait: float) -> int:
    return max(0, min(MAX_WAIT, math.ceil(wait)))


def _backoff(retries: Retries, attempt: int) -> float:
    return float(retries.backoff * 2**attempt * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not secrets


def _error(reply: Reply) -> ApiError:
    field = None
    try:
        err = json.loads(reply.body)["error"]
        code, message, field = str(err["code"]), str(err["message"]), err.get("field")
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", reply.body.decode(errors="replace")[:200]
    if reply.status == 429:
        return RateLimited(code, message, _seconds(reply.retry_after))
    return ApiError(reply.status, code, message, field)


def _seconds(retry_after: str | None) -> float:
    """``Retry-After`` in seconds (what the service sends); 1 s when absent or an HTTP date."""
    try:
        seconds = float(retry_after or "")
    except ValueError:
        return 1.0
    return seconds if 0 <= seconds < math.inf else 1.0
