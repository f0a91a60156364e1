"""``require_approval``: gate a function behind Countersign; its keyword arguments are the params.

What happens follows the manifest, not the caller: a sync action blocks until decided and then
runs or raises ``Rejected``; an async action (``blocking: false``), or one sampled for review after
the fact, runs at once, and if a human later rejects it, ``on_rejected`` runs through ``receiver``.
If a reviewer approved with edited params, the function runs with those.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from countersign_client.client import AsyncCountersign, Countersign
from countersign_client.errors import Rejected
from countersign_client.models import ApprovalRequest
from countersign_client.webhooks import CallbackReceiver, UndoHandler

P = ParamSpec("P")
T = TypeVar("T")

HOLD = 60  # seconds the first answer may wait for a decision


def _runs_now(request: ApprovalRequest) -> bool:
    return request.pending and request.mode in ("async", "sample")


def _remember(request: ApprovalRequest, receiver: CallbackReceiver | None, on_rejected: UndoHandler | None) -> None:
    if receiver is not None and on_rejected is not None:
        receiver.register(request.id, on_rejected)


def _final_kwargs(decided: ApprovalRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not decided.approved:
        raise Rejected(decided)
    edited = decided.decision.params if decided.decision is not None else None
    return dict(edited) if edited is not None else kwargs


def require_approval(
    client: Countersign,
    action: str,
    *,
    context: Mapping[str, Any] | None = None,
    receiver: CallbackReceiver | None = None,
    callback_url: str | None = None,
    on_rejected: UndoHandler | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Gate a synchronous function. ``timeout`` bounds the wait for a human (``StillPending`` after it)."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            request = client.request(action, dict(kwargs), context=context, callback_url=callback_url, wait=HOLD)
            if _runs_now(request):
                _remember(request, receiver, on_rejected)
                return fn(*args, **kwargs)
            decided = request if request.final else client.wait_for_decision(request, timeout=timeout)
            return fn(*args, **_final_kwargs(decided, dict(kwargs)))

        return wrapper

    return decorate


def require_approval_async(
    client: AsyncCountersign,
    action: str,
    *,
    context: Mapping[str, Any] | None = None,
    receiver: CallbackReceiver | None = None,
    callback_url: str | None = None,
    on_rejected: UndoHandler | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """``require_approval`` for coroutine functions and ``AsyncCountersign``."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            request = await client.request(action, dict(kwargs), context=context, callback_url=callback_url, wait=HOLD)
            if _runs_now(request):
                _remember(request, receiver, on_rejected)
                return await fn(*args, **kwargs)
            decided = request if request.final else await client.wait_for_decision(request, timeout=timeout)
            return await fn(*args, **_final_kwargs(decided, dict(kwargs)))

        return wrapper

    return decorate
