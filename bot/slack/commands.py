"""The ``/hitl`` slash command: ack at once (Slack's 3 s), then answer privately via ``respond``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import blocks
from bot.commands.parse import CommandError, parse
from bot.commands.reply import Reply
from bot.commands.service import CommandService
from bot.errors import BadPayload
from bot.ids import COMMAND
from bot.payloads import parse_slash_command
from bot.slack.listeners import user_message

log = logging.getLogger(__name__)


def register(app: AsyncApp, service: CommandService) -> None:
    @app.command(COMMAND)
    async def hitl(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        try:
            parsed = parse_slash_command(command)
        except BadPayload as exc:
            await respond(text=exc.user_message, response_type="ephemeral")
            return
        reply = await answer(service, client, user=parsed.user_id, text=parsed.text)
        try:
            await respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral")
        except Exception:
            log.exception("could not answer a /hitl command")


async def answer(service: CommandService, client: AsyncWebClient, *, user: str, text: str) -> Reply:
    """The reply to one command line; every failure becomes a reply that says what happened."""

    async def group_members(group: str) -> Sequence[str]:
        response = await client.usergroups_users_list(usergroup=group)
        return [str(u) for u in response.get("users") or []]

    try:
        parsed = parse(text)
        return blocks.render(await service.run(user, parsed, group_members))
    except CommandError as exc:
        return blocks.usage_error(exc.message, exc.usage)
    except Exception as exc:
        return blocks.refusal(user_message(exc, f"/hitl {text!r} for {user}"))
