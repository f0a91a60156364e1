"""What the service checks of its Slack workspace at start: that the bot token works, and the channel
ids behind the manifests' ``"#name"`` pools.

A token Slack refuses fails the start with the reason, instead of a service that reports ready and
then fails every post. A Slack that cannot be reached does not: the service starts (its agents'
requests are queued in the outbox meanwhile) and says so in its log. ``"#name"`` pools are resolved
with ``conversations.list`` (one read of the workspace's channels, public and the private ones the
bot is in), and a name that is not there fails the start naming tenant, pool and channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import aiohttp
from pydantic import BaseModel
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import ConfigError

log = logging.getLogger(__name__)

# auth.test answers that mean the token itself is wrong: no retry or wait fixes them.
BAD_TOKEN = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})
CHECK_TIMEOUT = 10.0  # seconds for each start-up call: a Slack that does not answer must not hold the start


class _Channel(BaseModel):
    id: str
    name: str = ""


class _Cursor(BaseModel):
    next_cursor: str = ""


class _Channels(BaseModel):
    channels: list[_Channel]
    response_metadata: _Cursor = _Cursor()


class PoolChannel(BaseModel):
    """A manifest pool's channel as written: an id, or ``"#name"``."""

    tenant: str
    pool: str
    channel: str


async def check_token(client: AsyncWebClient) -> str | None:
    """``auth.test``: the bot's user id, or None when Slack could not be reached (the start goes on).

    Raises:
        ConfigError: Slack refused the token.
    """
    try:
        answer = await asyncio.wait_for(client.auth_test(), CHECK_TIMEOUT)
    except SlackApiError as exc:
        error = str(exc.response.get("error", ""))
        if error in BAD_TOKEN:
            raise ConfigError(f"SLACK_BOT_TOKEN was refused by Slack ({error}): check the bot token") from exc
        log.warning("auth.test failed (%s): starting without checking the bot token", error)
        return None
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("Slack is unreachable (%s): starting without checking the bot token", type(exc).__name__)
        return None
    return str(answer.get("user_id", ""))


async def resolve_channels(client: AsyncWebClient, pools: Iterable[PoolChannel]) -> dict[str, str]:
    """Each ``"#name"`` among ``pools``' channels mapped to its id (ids are left as they are).

    Raises:
        ConfigError: a name no channel has, or Slack could not be asked.
    """
    named = [p for p in pools if p.channel.startswith("#")]
    if not named:
        return {}
    try:
        ids = await _channel_ids(client)
    except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
        what = exc.response.get("error", "") if isinstance(exc, SlackApiError) else type(exc).__name__
        names = ", ".join(sorted({p.channel for p in named}))
        raise ConfigError(
            f"cannot resolve the channel names {names} ({what}): Slack's conversations.list failed;"
            " write the pools' channel ids instead, or check the channels:read and groups:read scopes"
        ) from exc
    unknown = [p for p in named if p.channel[1:] not in ids]
    if unknown:
        listed = "; ".join(f"{p.tenant}: pool {p.pool}: no channel {p.channel}" for p in unknown)
        raise ConfigError(
            f"{listed} (a private channel needs the bot invited to it; or write the channel id, e.g. C0123ABC)"
        )
    return {p.channel: ids[p.channel[1:]] for p in named}


async def _channel_ids(client: AsyncWebClient) -> Mapping[str, str]:
    ids: dict[str, str] = {}
    cursor: str | None = None
    while True:
        listing = client.conversations_list(
            types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor
        )
        answer = await asyncio.wait_for(listing, CHECK_TIMEOUT)
        page = _Channels.model_validate(answer.data)
        ids.update((c.name, c.id) for c in page.channels if c.name)
        cursor = page.response_metadata.next_cursor
        if not cursor:
            return ids
