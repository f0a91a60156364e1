"""The App Home's policy form at the Slack edge (:mod:`bot.commands.policy_form`).

"Policy: <tenant>" opens the form for an admin or policy editor. Its submission waits for the proposal
(validation, the manifest's tests, the simulation) within ``ACK_BUDGET``, as an edit's does: a change
the service refuses goes back onto its field and the modal stays open to correct it; a proposed one
replaces the form with what was proposed and who may approve it. A check slower than that shows a
progress view and then its outcome in place.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import policy_changes as run_change
from bot.commands import policy_form
from bot.errors import BotError
from bot.ids import ActionId, CallbackId
from bot.payloads import parse_block_actions, parse_view_submission
from bot.service.policychanges import PolicyChanges
from bot.slack.listeners import ACK_BUDGET, AckOnce, report_error, tell_clicker, user_message

log = logging.getLogger(__name__)


def register(app: AsyncApp, service: PolicyChanges) -> None:
    """Attach the form's listeners (before the catch-all of :func:`bot.slack.listeners.register_unknown`)."""

    @app.action(re.compile(re.escape(ActionId.POLICY_OPEN.value) + r"(:\d+)?"))
    async def open_form(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        try:
            click = parse_block_actions(body)
            try:
                form = await service.form(click.action.value or "", click.user.id)
            except BotError as exc:  # not (or no longer) allowed: said to them alone
                await tell_clicker(respond, client, click, f":no_entry_sign: {exc.user_message}")
                return
            await client.views_open(trigger_id=click.trigger_id or "", view=policy_form.policy_modal(form))
        except Exception as exc:
            await report_error(exc, body, respond, client)

    @app.view(CallbackId.POLICY_PROPOSE.value)
    async def submit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        ack_once = AckOnce(ack)
        try:
            submission = parse_view_submission(body)
            tenant, user, view_id = submission.view.private_metadata, submission.user.id, submission.view.id
            reading = policy_form.read_form(submission.view)
            if reading.command is None:
                await ack_once(response_action="errors", errors=reading.errors)
                return
            task = asyncio.ensure_future(run_change.run(service, user, tenant, reading.command))
            await asyncio.wait({task}, timeout=ACK_BUDGET)
            error = task.exception() if task.done() else None
            if isinstance(error, BotError):  # what the checks refuse goes back under its field
                await ack_once(
                    response_action="errors", errors={reading.block: policy_form.field_error(error.user_message)}
                )
                return
            if task.done() and error is None and (proposed := task.result().proposed) is not None:
                await ack_once(response_action="update", view=policy_form.proposed_view(proposed))
                return
            await ack_once(response_action="update", view=policy_form.checking_view(tenant))
            try:
                answer = await task
                view = policy_form.proposed_view(answer.proposed) if answer.proposed else None
            except Exception as exc:
                view = policy_form.refused_view(tenant, user_message(exc, f"a policy change for {tenant} by {user}"))
            if view is not None and view_id:
                await client.views_update(view_id=view_id, view=view)
        except Exception:
            log.exception("could not handle the policy form")
        finally:
            await ack_once()
