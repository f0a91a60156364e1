"""Callbacks to agents: the decided request, POSTed and signed to the request's ``callback_url``.

Delivered at least once (a retry after a lost answer posts again): the agent dedupes on the
request id, which the outbox queues one callback for (``callback_key``).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import signed_headers
from bot.clock import Clock
from bot.metrics import Metrics
from bot.outbox.delivery import parse
from bot.service.effects import Callback, Effect
from bot.service.questions import read_question
from bot.service.recording import read_resource
from bot.service.transitions import QUESTION
from store.models import OutboxItem
from store.outbox import RetryPolicy
from store.uow import uow

# An agent's endpoint that is down tends to stay down longer than Slack does: back off further.
CALLBACK_RETRY = RetryPolicy(base=timedelta(seconds=2), cap=timedelta(minutes=10))
TIMEOUT = aiohttp.ClientTimeout(total=10)


class CallbackFailed(Exception):
    """The agent's endpoint answered, but not with a 2xx."""


class CallbackDelivery:
    """Delivers :data:`Effect.CALLBACK`."""

    kinds: Collection[str] = frozenset({Effect.CALLBACK})

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: aiohttp.ClientSession,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.http = http
        self.clock = clock
        self.metrics = metrics

    async def deliver(self, item: OutboxItem) -> None:
        payload = parse(Callback, item)
        async with uow(self.sessionmaker) as tx:
            row = await tx.requests.get(item.tenant, payload.request_id)
            if row is None or not row.callback_url:
                return
            # A question's callback carries the question resource (its answer), a request's the request.
            resource = await read_question(tx, row) if row.kind == QUESTION else await read_resource(tx, row)
            secret = await tx.tenants.callback_secret(item.tenant, now=self.clock.now())
        body = json.dumps(resource.model_dump(mode="json"), separators=(",", ":")).encode()
        headers = signed_headers(secret, body, int(self.clock.now().timestamp()))
        # Redirects are not followed: they could lead outside the tenant's allowed hosts.
        async with self.http.post(
            row.callback_url, data=body, headers=headers, allow_redirects=False, timeout=TIMEOUT
        ) as resp:
            if not 200 <= resp.status < 300:
                if self.metrics is not None:
                    self.metrics.callback(item.tenant, "failed_attempt")
                raise CallbackFailed(f"callback answered HTTP {resp.status}")
        if self.metrics is not None:
            self.metrics.callback(item.tenant, "delivered")
            if row.decided_at is not None:
                told = (self.clock.now() - row.decided_at).total_seconds()
                self.metrics.agent_told(item.tenant, "callback", told)
        async with uow(self.sessionmaker) as tx:
            await tx.audit.append(
                item.tenant, "callback.delivered", now=self.clock.now(), request_id=row.id,
                payload={"attempt": item.attempts, "status": resp.status},
            )  # fmt: skip
