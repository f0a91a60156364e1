"""Bolt listeners of question cards (bot.service.questions): a choice's button, Reply… and its modal.

As with votes (bot.slack.listeners), an answer is acknowledged once it has committed (or after
``ACK_BUDGET``), and each listener reports its own failures to the person.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import questionblocks
from bot.ids import ANSWER_INPUT, ActionId, BlockId, CallbackId
from bot.payloads import CardRef, parse_block_actions, parse_view_submission
from bot.questionblocks import MAX_ANSWER, choice_of
from bot.service.questions import Questions
from bot.slack.listeners import AckOnce, report_error, tell_clicker, within_ack_window

CHOICE = re.compile("^" + re.escape(ActionId.ANSWER.value) + r":\d{1,2}$")


def register(app: AsyncApp, questions: Questions) -> None:
    """Attach the question card's listeners to ``app``."""

    @app.action(CHOICE)
    async def choose(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        # As a vote's: the ack waits for the answer to commit (within ACK_BUDGET), so an answer Slack saw
        # acknowledged is kept even if the process dies right after (Slack never resends it).
        ack_once = AckOnce(ack)
        try:
            click = parse_block_actions(body)
            ref = CardRef.loads(click.action.value)
            answering = questions.answer(
                tenant=ref.tenant,
                question_id=ref.request_id,
                user=click.user.id,
                choice=choice_of(click.action.action_id),
            )
            done = await within_ack_window(ack_once, answering)
            if done.refusal is not None:
                await tell_clicker(respond, client, click, questionblocks.refusal_text(done.refusal))
        except Exception as exc:
            await report_error(exc, body, respond, client)
        finally:
            await ack_once()

    @app.action(ActionId.REPLY.value)
    async def reply(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        try:
            click = parse_block_actions(body)
            ref = CardRef.loads(click.action.value)
            user = click.user.id
            # Refuse before asking for an answer nobody will take; the refusal is audited by answer().
            if await questions.refusal_for(tenant=ref.tenant, question_id=ref.request_id, user=user) is not None:
                done = await questions.answer(tenant=ref.tenant, question_id=ref.request_id, user=user, text="")
                if done.refusal is not None:
                    await tell_clicker(respond, client, click, questionblocks.refusal_text(done.refusal))
                    return
            question, choices = await questions.summary(tenant=ref.tenant, question_id=ref.request_id)
            modal = questionblocks.reply_modal(ref, question, choices)
            await client.views_open(trigger_id=click.trigger_id or "", view=modal)
        except Exception as exc:
            await report_error(exc, body, respond, client)

    @app.view(CallbackId.ANSWER_REPLY.value)
    async def replied(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        submission = parse_view_submission(body)
        text = submission.view.text(BlockId.ANSWER_TEXT.value, ANSWER_INPUT)
        if not text or len(text) > MAX_ANSWER:
            problem = "Please write an answer." if not text else f"Please keep it within {MAX_ANSWER} characters."
            await ack(response_action="errors", errors={BlockId.ANSWER_TEXT.value: problem})
            return
        ack_once = AckOnce(ack)
        try:
            ref = CardRef.loads(submission.view.private_metadata)
            user = submission.user.id
            answering = questions.answer(tenant=ref.tenant, question_id=ref.request_id, user=user, text=text)
            done = await within_ack_window(ack_once, answering)
            if done.refusal is not None:
                await client.chat_postMessage(channel=user, text=questionblocks.refusal_text(done.refusal))
        except Exception as exc:
            await report_error(exc, body, None, client)
        finally:
            await ack_once()
