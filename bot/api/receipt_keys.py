"""``GET /v1/keys``: the public keys an executor checks receipts with (docs/receipts.md).

A key sees its own tenant's receipt keys only. Kept out of ``handlers`` so that adding it there is one route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.logs import log_context
from bot.service.receipts import public_keys
from store.uow import uow

Authenticate = Callable[[web.Request], Awaitable[tuple[str, str] | web.Response]]


def handler(
    authenticate: Authenticate, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The route's handler, on the API's own key check and rate limits (``authenticate``)."""

    async def keys(request: web.Request) -> web.Response:
        auth = await authenticate(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, _ = auth
        with log_context(tenant=tenant):
            async with uow(sessionmaker) as tx:
                listed = await public_keys(tx, tenant, now=clock.now())
        return web.json_response(text=listed.model_dump_json())

    return keys
