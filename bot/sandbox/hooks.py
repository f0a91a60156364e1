"""response_url: what a POST to one does: plain-text ``ok`` or an error."""

from __future__ import annotations

import json

from bot.sandbox.blockkit import check_message_blocks
from bot.sandbox.core import Core
from bot.sandbox.webapi import WebApi, normalize_blocks
from bot.sandbox.workspace import JSON


class HookError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class ResponseUrls:
    def __init__(self, core: Core, api: WebApi) -> None:
        self.core = core
        self.api = api

    def post(self, rid: str, raw: str) -> str:
        """Apply one POST to a response_url; returns ``"ok"`` or raises HookError (status, text)."""
        hook = self.core.response_urls.get(rid)
        if hook is None:
            raise HookError(404, "invalid_token")
        # (inferred wording) Slack answers a spent or stale response_url with a non-200 plain-text error.
        if self.core.clock.now() - hook.created_at > self.core.config.response_url_ttl:
            raise HookError(404, "expired_url")
        if hook.uses >= self.core.config.response_url_uses:
            raise HookError(404, "used_url")
        try:
            body = json.loads(raw)
        except ValueError:
            raise HookError(400, "invalid_payload") from None
        if not isinstance(body, dict):
            raise HookError(400, "invalid_payload")
        hook.uses += 1
        channel = self.core.workspace.channels.get(hook.channel or "")
        if channel is None:
            raise HookError(404, "channel_not_found")
        if body.get("delete_original"):
            self._delete_original(rid)
            return "ok"
        blocks = body.get("blocks")
        if blocks is not None and check_message_blocks(blocks):
            raise HookError(400, "invalid_blocks")
        text = str(body.get("text") or "")
        if not text and not blocks:
            raise HookError(400, "no_text")
        stored = normalize_blocks(self.core, blocks) if blocks is not None else []
        if body.get("replace_original") and hook.message_ts:
            self._replace_original(rid, text, stored)
            return "ok"
        thread_ts = body.get("thread_ts") or None
        if body.get("response_type") == "in_channel":
            self.api.post_as_bot(channel, text, stored, thread_ts=thread_ts)
        else:
            self.api.post_ephemeral(channel, hook.user, text, stored, thread_ts=thread_ts)
        return "ok"

    def _replace_original(self, rid: str, text: str, blocks: list[JSON]) -> None:
        hook = self.core.response_urls[rid]
        channel = self.core.workspace.channels[hook.channel or ""]
        if hook.is_ephemeral:
            for eph in channel.ephemerals:
                if eph.ts == hook.message_ts and eph.user == hook.user:
                    eph.text, eph.blocks = text, blocks
        else:
            message = channel.find(hook.message_ts or "")
            if message is None:
                raise HookError(404, "message_not_found")
            message.text, message.blocks = text, blocks
            message.edited_ts = self.core.ids.ts(self.core.clock.now())
        self.core.touch()

    def _delete_original(self, rid: str) -> None:
        hook = self.core.response_urls[rid]
        channel = self.core.workspace.channels[hook.channel or ""]
        if hook.is_ephemeral:
            channel.ephemerals = [
                e for e in channel.ephemerals if not (e.ts == hook.message_ts and e.user == hook.user)
            ]
        else:
            channel.messages = [m for m in channel.messages if m.ts != hook.message_ts]
        self.core.touch()
