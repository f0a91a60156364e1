"""``Countersign`` and ``AsyncCountersign``: the agent API over httpx, one connection pool per client.

Both run the same plans (``_plans``): they only send bytes and sleep. The URL and key come from the
arguments, else ``COUNTERSIGN_URL`` and ``COUNTERSIGN_API_KEY``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from countersign_client import _plans
from countersign_client._plans import Call, Pause, Plan, Reply, Retries, TransportFailure
from countersign_client.config import endpoint
from countersign_client.errors import StillPending
from countersign_client.models import ApprovalRequest, Question

# A long poll is held up to 60 s by the service: reads wait that long and some.
_LONG_READ = _plans.MAX_WAIT + 15


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": "countersign-client/0.1"}


def _request_kwargs(call: Call, timeout: float) -> dict[str, Any]:
    headers = {"Prefer": f"wait={call.wait}"} if call.wait else {}
    read = max(timeout, call.wait + 15)
    return {
        "method": call.method,
        "url": call.path,
        "json": None if call.body is None else dict(call.body),
        "headers": headers,
        "timeout": httpx.Timeout(timeout, read=read),
    }


class _Base:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        *,
        timeout: float,
        max_retries: int,
        max_retry_wait: float,
    ) -> None:
        self.endpoint = endpoint(url, api_key)
        self.timeout = timeout
        self.retries = Retries(max_retries=max_retries, max_retry_wait=max_retry_wait)

    @property
    def url(self) -> str:
        return self.endpoint.url

    def _ask(
        self,
        question: str,
        choices: Sequence[str] | None,
        context: Mapping[str, Any] | None,
        pool: str | None,
        timeout_seconds: int | None,
        idempotency_key: str | None,
        callback_url: str | None,
        wait: float | None,
    ) -> Plan:
        body: dict[str, Any] = {"question": question}
        if choices is not None:
            body["choices"] = list(choices)
        optional = {"context": dict(context) if context else None, "pool": pool, "timeout_seconds": timeout_seconds,
                    "idempotency_key": idempotency_key, "callback_url": callback_url}  # fmt: skip
        body.update({k: v for k, v in optional.items() if v is not None})
        if callback_url:
            body["mode"] = "async"  # the answer goes to the callback: the call returns at once
        return _plans.ask_question(body, wait=wait, retries=self.retries, url=self.url)

    def _create(
        self,
        action: str,
        params: Mapping[str, Any],
        context: Mapping[str, Any] | None,
        idempotency_key: str | None,
        callback_url: str | None,
        wait: float,
    ) -> Plan:
        return _plans.create(
            action,
            params,
            context=context,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            wait=wait,
            retries=self.retries,
            url=self.url,
        )


class Countersign(_Base):
    """The synchronous client. Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        super().__init__(url, api_key, timeout=timeout, max_retries=max_retries, max_retry_wait=max_retry_wait)
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.url, headers=_headers(self.endpoint.api_key), transport=transport)

    def _run(self, plan: Plan) -> Any:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Pause):
                    self._sleep(step.seconds)
                    step = plan.send(None)
                    continue
                try:
                    resp = self._http.request(**_request_kwargs(step, self.timeout))
                except httpx.TransportError as exc:
                    step = plan.throw(TransportFailure(str(exc)).with_traceback(None))
                    continue
                step = plan.send(Reply(resp.status_code, resp.headers.get("Retry-After"), resp.content))
        except StopIteration as done:
            return done.value

    def request(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: float = 0,
    ) -> ApprovalRequest:
        """Ask; with ``wait`` (at most 60) the answer waits that many seconds for a sync request's decision."""
        result: ApprovalRequest = self._run(self._create(action, params, context, idempotency_key, callback_url, wait))
        return result

    def get(self, request_id: str, *, wait: float = 0) -> ApprovalRequest:
        result: ApprovalRequest = self._run(_plans.get(request_id, wait=wait, retries=self.retries, url=self.url))
        return result

    def cancel(self, request_id: str) -> ApprovalRequest:
        result: ApprovalRequest = self._run(_plans.cancel(request_id, retries=self.retries, url=self.url))
        return result

    def wait_for_decision(self, request: ApprovalRequest, *, timeout: float | None = None) -> ApprovalRequest:
        """Long-poll until decided; raises ``StillPending`` if ``timeout`` seconds pass first."""
        plan = _plans.decision(request, timeout=timeout, retries=self.retries, url=self.url)
        result: ApprovalRequest = self._run(plan)
        if not result.final:
            raise StillPending(result)
        return result

    def public_keys(self) -> dict[str, Any]:
        """``GET /v1/keys``: the tenant's receipt keys, for ``receipts.verify_receipt`` (fetch once and keep)."""
        result: dict[str, Any] = self._run(_plans.public_keys(retries=self.retries, url=self.url))
        return result

    def ask_question(
        self,
        question: str,
        choices: Sequence[str] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        pool: str | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: float | None = None,
    ) -> Question:
        """Ask a person of ``pool`` (default: the manifest's default pool) and wait for the answer: up to
        ``wait`` seconds (None: until answered or expired; 0: return at once). ``question.answer`` holds it."""
        plan = self._ask(question, choices, context, pool, timeout_seconds, idempotency_key, callback_url, wait)
        result: Question = self._run(plan)
        return result

    def get_question(self, question_id: str, *, wait: float = 0) -> Question:
        result: Question = self._run(_plans.get_question(question_id, wait=wait, retries=self.retries, url=self.url))
        return result

    def cancel_question(self, question_id: str) -> Question:
        """Withdraw a pending question (its card says so); ``ApiError`` 409 once answered or closed."""
        result: Question = self._run(_plans.cancel_question(question_id, retries=self.retries, url=self.url))
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCountersign(_Base):
    """The asyncio client. Use it as an async context manager, or call ``await aclose()``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(url, api_key, timeout=timeout, max_retries=max_retries, max_retry_wait=max_retry_wait)
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(self.endpoint.api_key), transport=transport)

    async def _run(self, plan: Plan) -> Any:
        try:
            step = next(plan)
            while True:
                if isinstance(step, Pause):
                    await self._sleep(step.seconds)
                    step = plan.send(None)
                    continue
                try:
                    resp = await self._http.request(**_request_kwargs(step, self.timeout))
                except httpx.TransportError as exc:
                    step = plan.throw(TransportFailure(str(exc)).with_traceback(None))
                    continue
                step = plan.send(Reply(resp.status_code, resp.headers.get("Retry-After"), resp.content))
        except StopIteration as done:
            return done.value

    async def request(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: float = 0,
    ) -> ApprovalRequest:
        plan = self._create(action, params, context, idempotency_key, callback_url, wait)
        result: ApprovalRequest = await self._run(plan)
        return result

    async def get(self, request_id: str, *, wait: float = 0) -> ApprovalRequest:
        result: ApprovalRequest = await self._run(_plans.get(request_id, wait=wait, retries=self.retries, url=self.url))
        return result

    async def cancel(self, request_id: str) -> ApprovalRequest:
        result: ApprovalRequest = await self._run(_plans.cancel(request_id, retries=self.retries, url=self.url))
        return result

    async def wait_for_decision(self, request: ApprovalRequest, *, timeout: float | None = None) -> ApprovalRequest:
        plan = _plans.decision(request, timeout=timeout, retries=self.retries, url=self.url)
        result: ApprovalRequest = await self._run(plan)
        if not result.final:
            raise StillPending(result)
        return result

    async def public_keys(self) -> dict[str, Any]:
        """``GET /v1/keys``: the tenant's receipt keys, for ``receipts.verify_receipt`` (fetch once and keep)."""
        result: dict[str, Any] = await self._run(_plans.public_keys(retries=self.retries, url=self.url))
        return result

    async def ask_question(
        self,
        question: str,
        choices: Sequence[str] | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        pool: str | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: float | None = None,
    ) -> Question:
        """See :meth:`Countersign.ask_question`."""
        plan = self._ask(question, choices, context, pool, timeout_seconds, idempotency_key, callback_url, wait)
        result: Question = await self._run(plan)
        return result

    async def get_question(self, question_id: str, *, wait: float = 0) -> Question:
        plan = _plans.get_question(question_id, wait=wait, retries=self.retries, url=self.url)
        result: Question = await self._run(plan)
        return result

    async def cancel_question(self, question_id: str) -> Question:
        """See :meth:`Countersign.cancel_question`."""
        plan = _plans.cancel_question(question_id, retries=self.retries, url=self.url)
        result: Question = await self._run(plan)
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
