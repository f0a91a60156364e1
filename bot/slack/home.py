"""The App Home tab at the Slack edge: published from the database each time the person opens it,
and re-published by the outbox worker when a vote or decision changes what it shows."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import partial
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.home.blocks import home_view
from bot.home.service import HomeService
from bot.payloads import AppHomeOpened
from bot.service.effects import Effect, RefreshHomes
from store.models import OutboxItem

log = logging.getLogger(__name__)


# views.publish for one person: the listener's client, or the outbox's Slack calls (a 429 reschedules).
Publish = Callable[[str, dict[str, Any]], Awaitable[object]]


async def publish_homes(service: HomeService, publish: Publish, users: Sequence[str]) -> None:
    """Render ``users``' queues and pools now (from one read) and publish each as its person's Home tab."""
    for answer in await service.homes(users):
        await publish(answer.user, home_view(answer))


def register(app: AsyncApp, service: HomeService) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        # Bolt acks events itself before this runs; a failure here only leaves the old Home in place.
        try:
            opened = AppHomeOpened.model_validate(event)
        except ValidationError:
            log.warning("app_home_opened without a user: ignored")
            return
        if opened.tab != "home":
            return
        try:
            # Recorded first: a refresh that runs meanwhile then publishes it again rather than skipping it.
            await service.home_opened(opened.user)
            await publish_homes(service, partial(_publish_with, client), [opened.user])
        except Exception:
            log.exception("could not publish the App Home of %s", opened.user)


class HomeRefresher:
    """Delivers :data:`bot.service.effects.Effect.REFRESH_HOMES` outbox items (registered in the worker)."""

    kinds: Collection[str] = frozenset({Effect.REFRESH_HOMES})

    def __init__(self, service: HomeService, publish: Publish) -> None:
        self.service = service
        self.publish = publish
        self._published: set[str] = set()
        self._targets: dict[int, list[str]] = {}  # per claimed item, whose Home to publish (read ahead)

    async def begin_pass(self, items: Sequence[OutboxItem]) -> None:
        """The worker claimed a new batch. A Home published from here on renders every change the
        batch's items announce (they committed before the claim), so each person's Home is
        published once per batch however many of its items name them. Whose Homes the items
        concern is read for all of them at once."""
        self._published = set()
        wanted = [(item, RefreshHomes.model_validate(item.payload)) for item in items]
        targets = await self.service.homes_to_refresh_many(
            [(item.tenant, payload.request_id, payload.users) for item, payload in wanted]
        )
        self._targets.update((item.id, users) for (item, _), users in zip(wanted, targets, strict=True))

    async def deliver(self, item: OutboxItem) -> None:
        payload = RefreshHomes.model_validate(item.payload)
        users = self._targets.pop(item.id, None)
        if users is None:
            users = await self.service.homes_to_refresh(item.tenant, payload.request_id, payload.users)
        fresh = [user for user in users if user not in self._published]
        # Marked before publishing: the batch's other items, delivered meanwhile, skip them. A failure
        # raises: the worker retries the item (views.publish is idempotent), and that retry publishes
        # again for whoever this pass skipped on the strength of the failed publish.
        self._published.update(fresh)
        if fresh:
            await publish_homes(self.service, self.publish, fresh)


async def _publish_with(client: AsyncWebClient, user: str, view: dict[str, Any]) -> object:
    return await client.views_publish(user_id=user, view=view)
