"""Bolt listeners: ack first (Slack's 3-second window), parse into typed models, then work.

Votes get a bounded exception: the ack waits for the vote's transaction to commit, but never more
than ``ACK_BUDGET`` seconds, so an acknowledged click is normally already counted and cannot be
lost to a crash (tests/hardening/test_crash.py), while Slack's 3-second window is always kept
(a vote slower than the budget is acknowledged first and finishes after). Everything else
(ephemerals, cards) comes after the ack.

No exception leaves a listener once it has acked: each one's work runs inside ``_reported``,
which turns a failure into a note to the person who clicked. Bolt cannot be trusted with
those: when a listener raises within ~10 ms of its ack, Bolt's runner overwrites the ack it
recorded, waits out the 3 s window, logs "didn't call ack()" and then runs the next matching
listener (our catch-all), so Slack shows a timeout and the person gets the wrong message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks, reviewblocks
from bot.errors import BotError
from bot.ids import REASON_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import BlockActions, CardRef, parse_block_actions, parse_view_submission
from bot.slack.ports import ReviewService
from bot.slack.refusals import Reason, RefusalLog, RefusedRequest, first_values
from policy.types import Choice

log = logging.getLogger(__name__)


def user_message(error: Exception, doing: str) -> str:
    """What to tell the person whose ``doing`` failed, logged: our message for a BotError, a
    reference to the log line otherwise (the person can quote it; the log holds the traceback)."""
    if isinstance(error, BotError):
        log.info("refused %s: %s", doing, error.user_message)
        return error.user_message
    ref = uuid.uuid4().hex[:8]
    log.error("error handling %s (ref %s)", doing, ref, exc_info=error)
    return reviewblocks.SOMETHING_WENT_WRONG.format(ref=ref)


async def report_error(
    error: Exception, body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient
) -> None:
    """Tell the person whose action failed what :func:`user_message` says."""
    text = user_message(error, "Slack request")
    try:
        if respond is not None and body.get("response_url"):
            await respond(text=text, response_type="ephemeral", replace_original=False)
        elif user := (body.get("user") or {}).get("id"):
            await client.chat_postMessage(channel=user, text=text)
    except Exception:
        log.exception("could not tell the user about a failed Slack request")


# Of Slack's 3 s to answer an interaction, how long a vote may take before we acknowledge anyway.
ACK_BUDGET = 2.0
T = TypeVar("T")


class AckOnce:
    """``ack`` that may be called on every path out of a listener but answers Slack only once."""

    def __init__(self, ack: AsyncAck) -> None:
        self._ack = ack
        self._done = False

    async def __call__(self, **answer: Any) -> None:
        """``answer``: what a view submission's ack may carry (``response_action``, ``errors``, ``view``)."""
        if not self._done:
            self._done = True
            await self._ack(**answer)


async def within_ack_window(ack: Callable[[], Awaitable[None]], work: Awaitable[T]) -> T:
    """Run ``work``; ack when it is done or after ``ACK_BUDGET`` seconds, whichever comes first."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task}, timeout=ACK_BUDGET)
    finally:
        await ack()
    return await task


@asynccontextmanager
async def _reported(body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient) -> AsyncIterator[None]:
    try:
        yield
    except Exception as exc:
        await report_error(exc, body, respond, client)


async def tell_clicker(
    respond: AsyncRespond, client: AsyncWebClient, click: BlockActions, text: str, *, dm: bool = True
) -> None:
    """A note only the clicking person sees.

    Through the click's response_url first: chat.postEphemeral refuses people who are not in the
    channel (``user_not_in_channel``), and those are exactly the people most often refused. A click
    in the App Home has neither: the note goes in a DM, unless ``dm`` is False (then it is dropped).
    """
    if click.response_url:
        await respond(text=text, response_type="ephemeral", replace_original=False)
        return
    channel = click.container.channel_id if click.container else None
    if channel:
        await client.chat_postEphemeral(channel=channel, user=click.user.id, text=text)
    elif dm:
        await client.chat_postMessage(channel=click.user.id, text=text)
    else:
        log.warning("a click with no response_url and no channel: nothing shown to %s", click.user.id)


def register(app: AsyncApp, service: ReviewService) -> None:
    """Attach every listener of the review flow to ``app``."""

    @app.action(ActionId.APPROVE.value)
    async def approve(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        # The ack waits for the vote (within ACK_BUDGET): a click Slack saw acknowledged is counted even
        # if the process dies right after, and Slack never resends an interaction it got an ack for.
        ack_once = AckOnce(ack)
        try:
            async with _reported(body, respond, client):
                click = parse_block_actions(body)
                ref = CardRef.loads(click.action.value)
                vote = service.vote(ref=ref, user=click.user.id, choice=Choice.APPROVE, reason=None)
                refusal = (await within_ack_window(ack_once, vote)).refusal
                if refusal is not None:
                    await tell_clicker(respond, client, click, reviewblocks.refusal_text(refusal))
        finally:
            await ack_once()

    @app.action(ActionId.REJECT.value)
    async def reject(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        async with _reported(body, respond, client):
            click = parse_block_actions(body)
            ref = CardRef.loads(click.action.value)
            # Refuse before asking for a reason nobody will count.
            refusal = await service.refusal_for(ref=ref, user=click.user.id)
            if refusal is not None:
                await service.vote(ref=ref, user=click.user.id, choice=Choice.REJECT, reason=None)
                await tell_clicker(respond, client, click, reviewblocks.refusal_text(refusal))
                return
            modal = blocks.reject_modal(ref, await service.summary(ref=ref))
            await client.views_open(trigger_id=click.trigger_id or "", view=modal)

    @app.view(CallbackId.REJECT_REASON.value)
    async def reject_reason(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        submission = parse_view_submission(body)
        reason = submission.view.text(BlockId.REJECT_REASON.value, REASON_INPUT)
        if len(reason) < 3:
            await ack(response_action="errors", errors={BlockId.REJECT_REASON.value: "Please say why (3+ characters)."})
            return
        ack_once = AckOnce(ack)  # counted before the ack (within ACK_BUDGET), as for approve
        try:
            async with _reported(body, None, client):
                ref = CardRef.loads(submission.view.private_metadata)
                vote = service.vote(ref=ref, user=submission.user.id, choice=Choice.REJECT, reason=reason)
                refusal = (await within_ack_window(ack_once, vote)).refusal
                if refusal is not None:
                    await client.chat_postMessage(channel=submission.user.id, text=reviewblocks.refusal_text(refusal))
        finally:
            await ack_once()

    @app.action(ActionId.DETAILS.value)
    async def details(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        async with _reported(body, respond, client):
            click = parse_block_actions(body)
            info = await service.details(ref=CardRef.loads(click.action.value), user=click.user.id)
            await client.views_open(trigger_id=click.trigger_id or "", view=reviewblocks.details_modal(info))


def register_unknown(app: AsyncApp, refusals: RefusalLog) -> None:
    """Buttons that are not ours go to ``refusals``. Register it after every other listener: Bolt runs
    the first listener that matches, so this one only sees the rest."""

    @app.action(re.compile(".*"))
    async def unknown_action(
        ack: AsyncAck,
        body: dict[str, Any],
        client: AsyncWebClient,
        respond: AsyncRespond,
        request: AsyncBoltRequest,
    ) -> None:
        await ack()
        async with _reported(body, respond, client):
            click = parse_block_actions(body)
            refused = RefusedRequest.of(request.raw_body, first_values(request.headers), body)
            refusals.record(Reason.UNKNOWN_ACTION, refused)
            await tell_clicker(respond, client, click, reviewblocks.UNKNOWN_BUTTON)
