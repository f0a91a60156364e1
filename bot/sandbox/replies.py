"""conversations.replies: a thread read back, as the Web API answers it (docs.slack.dev/reference/methods/
conversations.replies).

The thread's parent comes first, then its replies oldest first; ``ts`` may name the parent or any
reply. ``oldest``/``latest`` (exclusive unless ``inclusive``) bound the replies, not the parent, which
heads the first page whatever the bounds; continuation pages (``cursor``) carry replies only. The
scope is the channel type's history scope (``channels:history``, ``groups:history``, ``im:history``),
and a bot token reads only conversations it is in. Kept apart from :mod:`bot.sandbox.webapi` only for
that module's size.
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
    ts_micros,
)
from bot.sandbox.workspace import JSON, Message

if TYPE_CHECKING:
    from bot.sandbox.webapi import WebApi

MAX_REPLIES_LIMIT = 1000
NO_LATEST = 10**18  # microseconds: later than any message ts


def conversations_replies(api: WebApi, args: JSON) -> JSON:
    if arg_str(args, "channel")[:1] in ("U", "W"):
        raise ApiError("channel_not_found")  # a conversation id: unlike chat.postMessage, no user id
    channel = api.visible_channel(args)
    api.check_scope("conversations.replies", channel)
    if not channel.bot_is_member:
        raise ApiError("not_in_channel")
    named = channel.find(arg_str(args, "ts", required=True))
    if named is None or named.from_slack:
        raise ApiError("thread_not_found")
    parent = channel.find(named.thread_ts) if named.thread_ts else named
    if parent is None:
        raise ApiError("thread_not_found")
    limit = arg_limit(args, maximum=MAX_REPLIES_LIMIT)
    oldest = arg_ts(args, "oldest", default=0)
    latest = arg_ts(args, "latest", default=NO_LATEST)
    inclusive = arg_bool(args, "inclusive")
    next_ts = arg_next_ts(args)
    start = next_ts if next_ts is not None else 0

    def shown(at: int) -> bool:
        after_oldest = at > oldest or (inclusive and at == oldest)
        before_latest = at < latest or (inclusive and at == latest)
        return after_oldest and before_latest and at >= start

    replies = sorted(
        (m for m in channel.replies(parent.ts) if not m.from_slack and shown(ts_micros(m.ts))),
        key=lambda m: ts_micros(m.ts),
    )
    head = [] if next_ts is not None else [parent]
    page, rest = replies[: max(limit - len(head), 0)], replies[max(limit - len(head), 0) :]
    with_metadata = arg_bool(args, "include_all_metadata")
    out: JSON = {
        "ok": True,
        "messages": [_message(api, m, parent, with_metadata=with_metadata) for m in head + page],
        "has_more": bool(rest),
    }
    if rest:
        out["response_metadata"] = {"next_cursor": encode_cursor("next_ts", str(ts_micros(rest[0].ts)))}
    return out


def _message(api: WebApi, message: Message, parent: Message, *, with_metadata: bool) -> JSON:
    if message.bot_id:
        out = api.bot_message_api(message, with_metadata=with_metadata)
    else:
        out = message.to_api(api.core.config.team_id, with_metadata=with_metadata)
    if message is not parent:
        out["parent_user_id"] = parent.user
    return out
