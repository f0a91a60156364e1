"""Ask Countersign and wait, telling the MCP caller how the wait goes: shared by ``serve`` and ``gate``.

The wait is bounded (``--wait``). A request still pending when the bound runs out is remembered
by its call (action and params): asking again with the same call resumes the wait on that request
instead of putting a second card in front of the reviewers. Its decision then answers that one
call and is forgotten, so an approval is never replayed for a later call that happens to be the
same. An idempotency key would replay it (the same key returns the same, approved, request), which
is why none is derived from the call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from countersign_client.client import AsyncCountersign
from countersign_client.errors import CountersignError
from countersign_client.models import ApprovalRequest

log = logging.getLogger("countersign_client.mcp")

# (progress, total, message): ``ServerSession.report_progress``, a no-op when the caller sent no token.
Report = Callable[[float, float | None, str], Awaitable[None]]

DEFAULT_WAIT = 300.0
PROGRESS_EVERY = 5.0
_LONG_POLL = 60  # the service holds a long poll at most this long

Verdict = Literal["go", "no", "waiting", "failed"]


@dataclass(frozen=True)
class Answer:
    """What came of asking.

    ``go``: approved, or a non-blocking (async / sample) action that runs now and is reviewed after.
    ``no``: denied, rejected, expired to a rejection, or cancelled. ``waiting``: still pending at
    the end of the wait. ``failed``: no decision could be had (``error`` says why).
    """

    verdict: Verdict
    request: ApprovalRequest | None
    params: dict[str, Any]  # what to run: the reviewer's edit if they made one, else the caller's
    edited: bool = False
    error: str | None = None
    waited: float = 0.0

    @property
    def request_id(self) -> str | None:
        return self.request.id if self.request is not None else None

    @property
    def by(self) -> str | None:
        decision = self.request.decision if self.request is not None else None
        return decision.by if decision is not None else None

    @property
    def reason(self) -> str | None:
        return self.request.reason if self.request is not None else None


def runs_now(request: ApprovalRequest) -> bool:
    """The manifest made it non-blocking: it goes ahead and a human reviews it afterwards."""
    return request.pending and request.mode in ("async", "sample")


def call_digest(action: str, params: Mapping[str, Any]) -> str:
    canonical = json.dumps([action, params], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def progress_message(request: ApprovalRequest) -> str:
    where = f" in {request.pool}" if request.pool else ""
    votes = ""
    if request.approvals_required > 1:
        given = sum(1 for v in request.votes if v.vote == "approve")
        votes = f", {given} of {request.approvals_required} approvals"
    return f"waiting for a reviewer{where} (request {request.id}{votes})"


@dataclass
class _Watch:
    current: ApprovalRequest


class Asker:
    """Ask one call at a time through ``client``; several calls may be in flight at once."""

    def __init__(
        self,
        client: AsyncCountersign,
        *,
        wait: float = DEFAULT_WAIT,
        progress_every: float = PROGRESS_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.wait = wait
        self.progress_every = progress_every
        self._clock = clock
        self._unfinished: dict[str, str] = {}  # call digest -> id of a request whose wait ran out

    async def ask(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        context: Mapping[str, Any] | None = None,
        report: Report | None = None,
    ) -> Answer:
        asked = dict(params)
        digest = call_digest(action, asked)
        started = self._clock()
        request: ApprovalRequest | None = None
        try:
            request = await self._submit(digest, action, asked, context)
            request = await self._settle(request, report)
        except CountersignError as exc:
            if request is not None and request.pending:
                self._unfinished[digest] = request.id  # asking again resumes it rather than asking twice
            return Answer("failed", request, asked, error=str(exc), waited=self._clock() - started)
        waited = self._clock() - started
        if request.pending and not runs_now(request):
            self._unfinished[digest] = request.id
            return Answer("waiting", request, asked, waited=waited)
        if not (request.approved or runs_now(request)):
            return Answer("no", request, asked, waited=waited)
        edited = request.decision.params if request.decision is not None else None
        if edited is not None and edited != asked:
            return Answer("go", request, dict(edited), edited=True, waited=waited)
        return Answer("go", request, asked, waited=waited)

    async def _submit(
        self, digest: str, action: str, params: dict[str, Any], context: Mapping[str, Any] | None
    ) -> ApprovalRequest:
        earlier = self._unfinished.pop(digest, None)
        if earlier is not None:
            log.info("resuming the wait on request %s for %s", earlier, action)
            try:
                return await self.client.get(earlier)
            except CountersignError:
                self._unfinished[digest] = earlier
                raise
        # No Prefer: wait here: the answer comes at once, and the wait below reports progress while it lasts.
        return await self.client.request(action, params, context=context)

    async def _settle(self, request: ApprovalRequest, report: Report | None) -> ApprovalRequest:
        if request.final or runs_now(request):
            return request
        deadline = self._clock() + self.wait
        watch = _Watch(request)
        failure: CountersignError | None = None
        async with anyio.create_task_group() as tasks:
            if report is not None:
                tasks.start_soon(self._tick, watch, report)
            try:
                while watch.current.pending:
                    left = math.floor(min(_LONG_POLL, deadline - self._clock()))
                    if left < 1:
                        break
                    watch.current = await self.client.get(watch.current.id, wait=left)
            except CountersignError as exc:
                failure = exc  # raised below: out of the task group, so it is not wrapped in a group
            tasks.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return watch.current

    async def _tick(self, watch: _Watch, report: Report) -> None:
        started = self._clock()
        while True:
            try:
                await report(self._clock() - started, self.wait, progress_message(watch.current))
            except Exception:
                # The caller went away or its transport broke: the wait itself goes on, silently.
                log.warning("could not send a progress notification", exc_info=True)
                return
            await anyio.sleep(self.progress_every)
