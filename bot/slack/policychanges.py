"""Approve / Refuse on a policy change's DM (:mod:`bot.policyblocks`), at the Slack edge.

A decision replaces the DM with its outcome (the buttons go); a refused click (the proposer's own
approval, a change already decided) is answered to the clicker alone and leaves the DM as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.policy_changes import decided_words
from bot.errors import BadPayload
from bot.ids import ActionId
from bot.payloads import parse_block_actions
from bot.policyblocks import read_change_value
from bot.service.policychanges import PolicyChanges
from bot.slack.listeners import tell_clicker, user_message

log = logging.getLogger(__name__)


def register(app: AsyncApp, service: PolicyChanges) -> None:
    """Attach the two buttons' listeners (before the catch-all of :func:`bot.slack.listeners.register_unknown`)."""

    async def decide(approve: bool, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        try:
            click = parse_block_actions(body)
        except BadPayload:
            return
        ref = read_change_value(click.action.value or "")
        try:
            if ref is None:
                raise BadPayload("This button does not name a policy change.")
            tenant, change = ref
            decided = await service.decide(tenant, click.user.id, change, approve=approve)
        except Exception as exc:
            text = user_message(exc, f"policy change {click.action.value!r} by {click.user.id}")
            try:
                await tell_clicker(respond, client, click, f":no_entry_sign: {text}")
            except Exception:
                log.exception("could not tell %s why a policy change click was refused", click.user.id)
            return
        text = decided_words(decided)
        try:
            if click.response_url:
                await respond(text=text, blocks=[], replace_original=True)
            else:
                await tell_clicker(respond, client, click, text)
        except Exception:
            log.exception("could not show the decision of policy change %s", change)

    @app.action(ActionId.POLICY_APPROVE.value)
    async def approve(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        await decide(True, body, client, respond)

    @app.action(ActionId.POLICY_REFUSE.value)
    async def refuse(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        await decide(False, body, client, respond)
