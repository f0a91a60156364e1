"""The Web API methods the bot calls, with Slack's success shapes and error codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.sandbox.blockkit import check_message_blocks
from bot.sandbox.conversations import (
    conversations_history,
    conversations_info,
    conversations_join,
    conversations_list,
    conversations_members,
    conversations_open,
)
from bot.sandbox.core import Core
from bot.sandbox.replies import conversations_replies
from bot.sandbox.webargs import ApiError, arg_json, arg_metadata, arg_str
from bot.sandbox.workspace import JSON, Channel, Ephemeral, Message, Workspace

MAX_TEXT = 40_000  # chat.postMessage truncates beyond this
MAX_UPDATE_TEXT = 4_000  # chat.update answers msg_too_long beyond this

# Scope a method needs (beyond the token); for conversations.* it depends on the channel (PER_CHANNEL_SCOPE).
NEEDED_SCOPE = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.delete": "chat:write",
    "users.info": "users:read",
    "conversations.info": "channels:read",
    "conversations.members": "channels:read",
    "conversations.list": "channels:read",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "conversations.join": "channels:join",
    "conversations.open": "im:write",
    "usergroups.users.list": "usergroups:read",
}
# The public-channel scope, and what a private channel or a DM needs instead; checked per channel.
PER_CHANNEL_SCOPE = {
    "channels:read": {"private": "groups:read"},
    "channels:history": {"private": "groups:history", "im": "im:history"},
}


def normalize_blocks(core: Core, blocks: list[JSON]) -> list[JSON]:
    """What Slack stores: a block_id on every block and ``verbatim: false`` on mrkdwn texts."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if out.get("type") == "mrkdwn" and "text" in out:
                out.setdefault("verbatim", False)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result = []
    for block in blocks:
        block = walk(block)
        block.setdefault("block_id", core.ids.block_id())
        result.append(block)
    return result


class WebApi:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "chat.getPermalink": self.chat_get_permalink,
            "chat.delete": self.chat_delete,
            "conversations.info": lambda args: conversations_info(self, args),
            "conversations.members": lambda args: conversations_members(self, args),
            "conversations.list": lambda args: conversations_list(self, args),
            "conversations.history": lambda args: conversations_history(self, args),
            "conversations.replies": lambda args: conversations_replies(self, args),
            "conversations.join": lambda args: conversations_join(self, args),
            "conversations.open": lambda args: conversations_open(self, args),
            "users.info": self.users_info,
            "usergroups.users.list": self.usergroups_users_list,
        }

    @property
    def ws(self) -> Workspace:
        return self.core.workspace

    def check_scope(self, method: str, channel: Channel | None = None) -> None:
        needed = NEEDED_SCOPE.get(method)
        if needed in PER_CHANNEL_SCOPE and channel is not None:
            instead = PER_CHANNEL_SCOPE[needed]
            if channel.is_im:
                needed = instead.get("im", needed)
            elif channel.is_private:
                needed = instead["private"]
        if needed and needed not in self.core.config.scopes:
            raise ApiError("missing_scope", needed=needed, provided=",".join(self.core.config.scopes))

    def visible_channel(self, args: JSON, key: str = "channel") -> Channel:
        """A channel the bot can see: private channels it is not in are channel_not_found, as in Slack."""
        ref = arg_str(args, key)
        channel = self.ws.resolve_channel(ref) if ref else None
        if channel is None and ref[:1] in ("U", "W") and ref in self.ws.users:
            channel = self.dm_channel(ref)
        if channel is None or (channel.is_private and not channel.bot_is_member):
            raise ApiError("channel_not_found")
        return channel

    def dm_channel(self, user: str) -> Channel:
        for channel in self.ws.channels.values():
            if channel.is_im and channel.members == [user]:
                return channel
        channel = Channel(id=self.core.ids.make("D"), name=user, members=[user], is_im=True, bot_is_member=True)
        self.ws.channels[channel.id] = channel
        return channel

    def writable_channel(self, args: JSON) -> Channel:
        channel = self.visible_channel(args)
        if channel.is_archived:
            raise ApiError("is_archived")
        if not channel.bot_is_member and "chat:write.public" not in self.core.config.scopes:
            raise ApiError("not_in_channel")
        return channel

    def message_content(self, args: JSON, *, limit: int = MAX_TEXT) -> tuple[str, list[JSON] | None]:
        text = arg_str(args, "text")
        blocks = arg_json(args, "blocks")
        attachments = arg_json(args, "attachments")
        if isinstance(attachments, list) and len(attachments) > 100:
            raise ApiError("too_many_attachments")
        if blocks is not None:
            errors = check_message_blocks(blocks)
            if errors:
                raise ApiError(
                    "invalid_blocks", errors=errors, response_metadata={"messages": [f"[ERROR] {e}" for e in errors]}
                )
        if len(text) > limit:
            if limit == MAX_UPDATE_TEXT:
                raise ApiError("msg_too_long")
            text = text[:limit]
        return text, normalize_blocks(self.core, blocks) if blocks is not None else None

    # -- auth -------------------------------------------------------------------------------------------
    def auth_test(self, args: JSON) -> JSON:
        cfg = self.core.config
        return {
            "ok": True,
            "url": f"https://{cfg.domain}.slack.com/",
            "team": cfg.team_name,
            "user": cfg.bot_name,
            "team_id": cfg.team_id,
            "user_id": cfg.bot_user_id,
            "bot_id": cfg.bot_id,
            "is_enterprise_install": False,
        }

    # -- chat -------------------------------------------------------------------------------------------
    def chat_post_message(self, args: JSON) -> JSON:
        channel = self.writable_channel(args)
        text, blocks = self.message_content(args)
        if not text and not blocks and not arg_json(args, "attachments"):
            raise ApiError("no_text")
        metadata = arg_metadata(args)
        message = self.post_as_bot(
            channel, text, blocks or [], thread_ts=arg_str(args, "thread_ts") or None, metadata=metadata
        )
        return {
            "ok": True,
            "channel": channel.id,
            "ts": message.ts,
            "message": self.bot_message_api(message, with_metadata=True),
        }

    def post_as_bot(
        self, channel: Channel, text: str, blocks: list[JSON], *, thread_ts: str | None, metadata: JSON | None = None
    ) -> Message:
        cfg = self.core.config
        ts = self.core.ids.ts(self.core.clock.now())
        parent = channel.find(thread_ts) if thread_ts else None
        if parent is not None and parent.thread_ts:
            parent = channel.find(parent.thread_ts) or parent  # a reply to a reply joins the same thread
        message = Message(
            channel=channel.id,
            ts=ts,
            text=text,
            blocks=blocks,
            user=cfg.bot_user_id,
            bot_id=cfg.bot_id,
            app_id=cfg.app_id,
            thread_ts=parent.ts if parent else None,
            metadata=metadata,
        )
        if parent is not None:
            parent.thread_ts = parent.ts
            parent.reply_count += 1
            parent.latest_reply = ts
            if cfg.bot_user_id not in parent.reply_users:
                parent.reply_users.append(cfg.bot_user_id)
        channel.messages.append(message)
        self.core.touch()
        return message

    def bot_message_api(self, message: Message, *, with_metadata: bool = False) -> JSON:
        out = message.to_api(self.core.config.team_id, with_metadata=with_metadata)
        out["bot_profile"] = {
            "id": self.core.config.bot_id,
            "app_id": self.core.config.app_id,
            "name": self.core.config.bot_name,
            "deleted": False,
            "team_id": self.core.config.team_id,
        }
        return out

    def own_message(self, args: JSON, *, refusal: str) -> tuple[Channel, str, Message]:
        """The message ``args`` name by channel and ts; one the bot did not post is refused with ``refusal``."""
        channel = self.visible_channel(args)
        ts = arg_str(args, "ts", required=True)
        message = channel.find(ts)
        if message is None:
            raise ApiError("message_not_found")
        if message.bot_id != self.core.config.bot_id:
            raise ApiError(refusal)
        return channel, ts, message

    def chat_update(self, args: JSON) -> JSON:
        channel, ts, message = self.own_message(args, refusal="cant_update_message")
        text, blocks = self.message_content(args, limit=MAX_UPDATE_TEXT)
        metadata = arg_metadata(args)
        if "text" in args:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if metadata is not None:  # left out: the message keeps the metadata it has
            message.metadata = metadata
        message.edited_ts = self.core.ids.ts(self.core.clock.now())
        self.core.touch()
        return {
            "ok": True,
            "channel": channel.id,
            "ts": ts,
            "text": message.text,
            "message": message.to_api(self.core.config.team_id, with_metadata=True),
        }

    def chat_post_ephemeral(self, args: JSON) -> JSON:
        channel = self.writable_channel(args)
        user = arg_str(args, "user", required=True)
        if user not in self.ws.users:
            raise ApiError("user_not_found")
        if user not in channel.members:
            raise ApiError("user_not_in_channel")
        text, blocks = self.message_content(args)
        if not text and not blocks:
            raise ApiError("no_text")
        ts = self.post_ephemeral(channel, user, text, blocks or [], thread_ts=arg_str(args, "thread_ts") or None)
        return {"ok": True, "message_ts": ts}

    def post_ephemeral(
        self,
        channel: Channel,
        user: str,
        text: str,
        blocks: list[JSON],
        *,
        thread_ts: str | None,
        from_slack: bool = False,
    ) -> str:
        ts = self.core.ids.ts(self.core.clock.now())
        channel.ephemerals.append(Ephemeral(channel.id, ts, user, text, blocks, thread_ts, not from_slack, from_slack))
        self.core.touch()
        return ts

    def chat_get_permalink(self, args: JSON) -> JSON:
        channel = self.visible_channel(args)
        message = channel.find(arg_str(args, "message_ts", required=True))
        if message is None:
            raise ApiError("message_not_found")
        link = f"{self.core.base_url}/archives/{channel.id}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return {"ok": True, "channel": channel.id, "permalink": link}

    def chat_delete(self, args: JSON) -> JSON:
        channel, ts, message = self.own_message(args, refusal="cant_delete_message")
        channel.messages.remove(message)
        self.core.touch()
        return {"ok": True, "channel": channel.id, "ts": ts}

    # -- conversations ----------------------------------------------------------------------------------

    # -- users / groups ---------------------------------------------------------------------------------
    def users_info(self, args: JSON) -> JSON:
        user = self.ws.users.get(arg_str(args, "user"))
        if user is None:
            raise ApiError("user_not_found")
        return {"ok": True, "user": user.to_api(self.core.config.team_id)}

    def usergroups_users_list(self, args: JSON) -> JSON:
        group = self.ws.usergroups.get(arg_str(args, "usergroup"))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"ok": True, "users": list(group.users)}
