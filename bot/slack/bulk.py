"""Bulk approval at the Slack edge: the App Home's "Approve several" button and its two modal steps.

The button opens a modal to pick requests (``views.open``); submitting it swaps in the side-by-side
check (``response_action: update``); confirming that answers with the result, request by request.
The confirmation's ack waits for the votes as a card's Approve does (within ``ACK_BUDGET``, so an
acknowledged confirmation is counted); a larger batch that takes longer is acknowledged with a
"counting" view, replaced by the result through ``views.update`` once it commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.home import bulk_blocks
from bot.ids import BULK_PICK_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import BulkRef, parse_block_actions, parse_view_submission
from bot.service.bulk import BULK_MAX, BulkItem, BulkOutcome
from bot.slack.listeners import ACK_BUDGET, report_error, user_message

log = logging.getLogger(__name__)

NOTHING_TO_APPROVE = "Nothing of `{action}` waits for your approval now: your App Home shows what does."
NONE_CHOSEN = "Choose at least one request."
TOO_MANY = f"At most {BULK_MAX} requests at a time."
ALL_GONE = "None of these requests can be found any more; reopen your App Home."


class BulkService(Protocol):
    async def offer(self, *, tenant: str, action: str, user: str) -> tuple[list[BulkItem], int]: ...

    async def preflight(self, *, tenant: str, action: str, user: str, request_ids: Sequence[str]) -> list[BulkItem]: ...

    async def approve(
        self, *, tenant: str, user: str, request_ids: Sequence[str], shown: Sequence[str] = ()
    ) -> list[BulkOutcome]: ...


def _chosen(values: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    picked = values.get(BlockId.BULK_PICK.value, {}).get(BULK_PICK_INPUT, {}).get("selected_options") or []
    return [str(o["value"]) for o in picked if isinstance(o, dict) and isinstance(o.get("value"), str)]


def register(app: AsyncApp, service: BulkService) -> None:
    """Attach the bulk approval listeners (before the catch-all of :func:`bot.slack.listeners.register`)."""

    @app.action(ActionId.BULK_OPEN.value)
    async def open_bulk(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        try:
            click = parse_block_actions(body)
            ref = BulkRef.loads(click.action.value)
            items, more = await service.offer(tenant=ref.tenant, action=ref.action, user=click.user.id)
            if not items:
                # A click in the App Home has no channel and no response_url: tell them in a DM.
                await client.chat_postMessage(channel=click.user.id, text=NOTHING_TO_APPROVE.format(action=ref.action))
                return
            await client.views_open(trigger_id=click.trigger_id or "", view=bulk_blocks.select_modal(ref, items, more))
        except Exception as exc:
            await report_error(exc, body, None, client)

    @app.view(CallbackId.BULK_SELECT.value)
    async def select(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            submission = parse_view_submission(body)
            ref = BulkRef.loads(submission.view.private_metadata)
            chosen = _chosen(submission.view.state.values)
            problem = NONE_CHOSEN if not chosen else TOO_MANY if len(chosen) > BULK_MAX else None
            if problem is not None:
                await ack(response_action="errors", errors={BlockId.BULK_PICK.value: problem})
                return
            user = submission.user.id
            items = await service.preflight(tenant=ref.tenant, action=ref.action, user=user, request_ids=chosen)
            if not items:
                await ack(response_action="errors", errors={BlockId.BULK_PICK.value: ALL_GONE})
                return
            await ack(response_action="update", view=bulk_blocks.preflight_modal(ref, items))
        except Exception as exc:
            await ack(response_action="update", view=bulk_blocks.message_modal(user_message(exc, "bulk selection")))

    @app.view(CallbackId.BULK_CONFIRM.value)
    async def confirm(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            submission = parse_view_submission(body)
            ref = BulkRef.loads(submission.view.private_metadata)
        except Exception as exc:
            await ack(response_action="update", view=bulk_blocks.message_modal(user_message(exc, "bulk approval")))
            return
        work = asyncio.ensure_future(
            service.approve(tenant=ref.tenant, user=submission.user.id, request_ids=ref.request_ids, shown=ref.params)
        )
        await asyncio.wait({work}, timeout=ACK_BUDGET)
        late = not work.done()
        if late:  # Slack's 3 s: say it is being counted; the result replaces this view
            await ack(response_action="update", view=bulk_blocks.progress_modal(len(ref.request_ids)))
        try:
            view = bulk_blocks.result_modal(await work)
        except Exception as exc:
            view = bulk_blocks.message_modal(user_message(exc, "bulk approval"))
        if not late:
            await ack(response_action="update", view=view)
            return
        try:
            await client.views_update(view_id=submission.view.id or "", view=view)
        except Exception:
            log.exception("could not show the result of a bulk approval to %s", submission.user.id)
