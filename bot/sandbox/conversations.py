"""conversations.info, .members, .list, .history, .join and .open, as the Web API answers them
(conversations.replies is in :mod:`bot.sandbox.replies`).

The read scopes depend on the channel's type (``channels:*``, ``groups:*``, ``im:*``: see
:data:`bot.sandbox.webapi.PER_CHANNEL_SCOPE`); private channels the bot is not in are ``channel_not_found``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.sandbox.webargs import (
    ApiError,
    arg_bool,
    arg_limit,
    arg_next_ts,
    arg_str,
    arg_ts,
    encode_cursor,
    paginate,
    ts_micros,
)
from bot.sandbox.workspace import JSON

if TYPE_CHECKING:
    from bot.sandbox.webapi import WebApi

MAX_HISTORY_LIMIT = 999  # conversations.history's documented maximum ``limit``
NO_LATEST = 10**18  # microseconds: later than any message ts


def conversations_info(api: WebApi, args: JSON) -> JSON:
    channel = api.visible_channel(args)
    api.check_scope("conversations.info", channel)
    return {"ok": True, "channel": channel.to_api(api.core.config.team_id)}


def conversations_members(api: WebApi, args: JSON) -> JSON:
    channel = api.visible_channel(args)
    api.check_scope("conversations.members", channel)
    members = list(channel.members)
    if channel.bot_is_member and not channel.is_im:
        members.append(api.core.config.bot_user_id)
    page, next_cursor = paginate(members, args, "user_id")
    return {"ok": True, "members": page, "response_metadata": {"next_cursor": next_cursor}}


def conversations_list(api: WebApi, args: JSON) -> JSON:
    api.check_scope("conversations.list")
    types = set((arg_str(args, "types") or "public_channel").split(","))
    channels = [
        c
        for c in api.ws.channels.values()
        if not c.is_im
        and (
            ("private_channel" in types and c.is_private and c.bot_is_member)
            or ("public_channel" in types and not c.is_private)
        )
        and not (arg_bool(args, "exclude_archived") and c.is_archived)
    ]
    if any(c.is_private for c in channels) and "groups:read" not in api.core.config.scopes:
        raise ApiError("missing_scope", needed="groups:read", provided=",".join(api.core.config.scopes))
    page, next_cursor = paginate([c.id for c in channels], args, "channel")
    team = api.core.config.team_id
    return {
        "ok": True,
        "channels": [api.ws.channels[cid].to_api(team) for cid in page],
        "response_metadata": {"next_cursor": next_cursor},
    }


def conversations_history(api: WebApi, args: JSON) -> JSON:
    """Top-level messages, newest first, between ``oldest`` and ``latest`` (exclusive unless ``inclusive``);
    the cursor names the ts of the next page's first message, as Slack's ``next_ts:`` cursors do."""
    channel = api.visible_channel(args)
    api.check_scope("conversations.history", channel)
    if not channel.bot_is_member:
        raise ApiError("not_in_channel")  # a bot token reads only the conversations it is in
    limit = arg_limit(args, maximum=MAX_HISTORY_LIMIT)
    oldest = arg_ts(args, "oldest", default=0)
    # Slack's default is now; no message is newer (here a frozen clock's ts run past it), so: no bound.
    latest = arg_ts(args, "latest", default=NO_LATEST)
    inclusive = arg_bool(args, "inclusive")
    start = next_ts if (next_ts := arg_next_ts(args)) is not None else latest

    def shown(at: int) -> bool:
        after_oldest = at > oldest or (inclusive and at == oldest)
        before_latest = at < latest or (inclusive and at == latest)
        return after_oldest and before_latest and at <= start

    found = sorted(
        ((ts_micros(m.ts), m) for m in channel.top_level() if not m.from_slack and shown(ts_micros(m.ts))),
        key=lambda pair: pair[0],
        reverse=True,
    )
    page, rest = found[:limit], found[limit:]
    with_metadata = arg_bool(args, "include_all_metadata")
    out: JSON = {
        "ok": True,
        "messages": [
            api.bot_message_api(m, with_metadata=with_metadata)
            if m.bot_id
            else m.to_api(api.core.config.team_id, with_metadata=with_metadata)
            for _, m in page
        ],
        "has_more": bool(rest),
        "pin_count": 0,
    }
    if rest:
        out["response_metadata"] = {"next_cursor": encode_cursor("next_ts", str(rest[0][0]))}
    return out


def conversations_join(api: WebApi, args: JSON) -> JSON:
    ref = arg_str(args, "channel")
    channel = api.ws.resolve_channel(ref) if ref else None
    if channel is None:
        raise ApiError("channel_not_found")
    if channel.is_private or channel.is_im:
        raise ApiError("method_not_supported_for_channel_type")
    if channel.is_archived:
        raise ApiError("is_archived")
    already = channel.bot_is_member
    channel.bot_is_member = True
    api.core.touch()
    out: JSON = {"ok": True, "channel": channel.to_api(api.core.config.team_id)}
    if already:
        out.update(warning="already_in_channel", response_metadata={"warnings": ["already_in_channel"]})
    return out


def conversations_open(api: WebApi, args: JSON) -> JSON:
    users = [u for u in arg_str(args, "users").split(",") if u]
    if len(users) != 1 or users[0] not in api.ws.users:
        raise ApiError("user_not_found")
    channel = api.dm_channel(users[0])
    return {"ok": True, "channel": {"id": channel.id}}
