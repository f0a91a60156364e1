"""Edit & approve at the Slack edge: the card's button opens the edit modal; its submission edits and approves.

The submission's ack waits for the edit to commit (within ``ACK_BUDGET``, as a vote's does), so that a form
the use case finds wrong (a value that is not a number, nothing changed) goes back onto its fields with
``response_action: errors`` and the modal stays open. A refusal, or the policy refusing the edit, is told to
the editor alone; what the edit did is in the card and its thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import editblocks, reviewblocks
from bot.editblocks import EditRef
from bot.ids import REASON_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import CardRef, parse_block_actions, parse_view_submission
from bot.service.edits import EditForm, EditResult
from bot.slack.listeners import ACK_BUDGET, AckOnce, report_error, tell_clicker, user_message
from policy.types import Refusal

log = logging.getLogger(__name__)


class EditService(Protocol):
    async def form(self, *, ref: CardRef, user: str) -> EditForm:
        """The edit form for ``user``, or why they may not edit (audited). Raises NotFound, Conflict."""
        ...

    async def submit(
        self, *, ref: EditRef, user: str, values: Mapping[str, str | bool | None], reason: str | None
    ) -> EditResult:
        """Apply the edit as the policy says and count the editor's approval where it may count."""
        ...


def result_text(result: EditResult) -> str | None:
    """What the editor alone is told after submitting; None when the card and its thread say it all."""
    if result.refusal is not None:
        return reviewblocks.refusal_text(result.refusal)
    if result.refused is not None:
        return editblocks.refused_text(result.refused)
    if result.stale:
        return editblocks.STALE
    if result.errors:
        return "Your edit was not applied: " + "; ".join(f"{k}: {v}" for k, v in result.errors.items())
    return None


def register(app: AsyncApp, service: EditService) -> None:
    """Attach the Edit & approve listeners (before the catch-all of :func:`bot.slack.listeners.register`)."""

    @app.action(ActionId.EDIT.value)
    async def edit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        try:
            click = parse_block_actions(body)
            form = await service.form(ref=CardRef.loads(click.action.value), user=click.user.id)
            if form.refusal is not None or form.ref is None:
                await tell_clicker(
                    respond, client, click, reviewblocks.refusal_text(form.refusal or Refusal.NOT_IN_POOL)
                )
                return
            modal = editblocks.edit_modal(form.ref, form.summary, form.fields)
            await client.views_open(trigger_id=click.trigger_id or "", view=modal)
        except Exception as exc:
            await report_error(exc, body, respond, client)

    @app.view(CallbackId.EDIT_SUBMIT.value)
    async def submit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        ack_once = AckOnce(ack)
        user = (body.get("user") or {}).get("id") or ""
        try:
            submission = parse_view_submission(body)
            user = submission.user.id
            ref = EditRef.loads(submission.view.private_metadata)
            values = editblocks.submitted_values(submission.view.state.values)
            reason = submission.view.text(BlockId.EDIT_REASON.value, REASON_INPUT)
            task = asyncio.ensure_future(service.submit(ref=ref, user=user, values=values, reason=reason))
            await asyncio.wait({task}, timeout=ACK_BUDGET)
            if task.done() and task.exception() is None and task.result().errors:
                # The modal stays open, each message on its field.
                await ack_once(response_action="errors", errors=editblocks.field_errors(task.result().errors))
                return
            await ack_once()
            text = result_text(await task)
        except Exception as exc:
            text = user_message(exc, "an edit")
        finally:
            await ack_once()
        if text and user:
            try:
                await client.chat_postMessage(channel=user, text=text)
            except Exception:
                log.exception("could not tell the editor what became of their edit")
