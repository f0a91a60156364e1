"""The ``/hitl`` slash command: ack at once (Slack's 3 s), then answer privately via ``respond``."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import blocks
from bot.commands.audit_blocks import audit_modal
from bot.commands.parse import CommandError, parse
from bot.commands.reply import Reply
from bot.commands.service import CommandService
from bot.errors import BadPayload
from bot.ids import COMMAND, ActionId
from bot.payloads import parse_block_actions, parse_slash_command
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

    @app.action(ActionId.AUDIT_OLDER.value)
    async def older(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        """The next page of ``/hitl audit`` (in its message, or in the App Home's modal): the button carries
        the command line for it, answered like one, so the page is judged against who asks it now."""
        await ack()
        try:
            click = parse_block_actions(body)
        except BadPayload as exc:
            await respond(text=exc.user_message, response_type="ephemeral", replace_original=False)
            return
        reply = await answer(service, client, user=click.user.id, text=click.action.value or "")
        try:
            if click.container is not None and click.container.view_id:
                await client.views_update(view_id=click.container.view_id, view=audit_modal(reply))
            else:
                await respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral", replace_original=True)
        except Exception:
            log.exception("could not page /hitl audit")

    @app.action(re.compile(re.escape(ActionId.AUDIT_OPEN.value) + r"(:\d+)?"))
    async def open_audit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """App Home: a tenant's audit trail in a modal, newest first, paged in place."""
        await ack()
        try:
            click = parse_block_actions(body)
        except BadPayload:
            return
        reply = await answer(service, client, user=click.user.id, text=f"{click.action.value or ''} audit")
        try:
            await client.views_open(trigger_id=click.trigger_id or "", view=audit_modal(reply))
        except Exception:
            log.exception("could not open the audit trail")


async def answer(service: CommandService, client: AsyncWebClient, *, user: str, text: str) -> Reply:
    """The reply to one command line; every failure becomes a reply that says what happened."""

    async def group_members(group: str) -> Sequence[str]:
        response = await client.usergroups_users_list(usergroup=group)
        return [str(u) for u in response.get("users") or []]

    async def person(user_id: str) -> str | None:
        # Whether someone could vote at all (/hitl delegate): a person of this workspace, not a bot.
        try:
            found = (await client.users_info(user=user_id)).get("user") or {}
        except SlackApiError:
            return "they are not in this workspace"
        if found.get("is_bot") or found.get("is_app_user") or user_id == "USLACKBOT":
            return "that is a bot, not a person"
        if found.get("deleted"):
            return "their account is deactivated"
        return None

    try:
        parsed = parse(text)
        return blocks.render(await service.run(user, parsed, group_members, person))
    except CommandError as exc:
        return blocks.usage_error(exc.message, exc.usage)
    except Exception as exc:
        return blocks.refusal(user_message(exc, f"/hitl {text!r} for {user}"))
