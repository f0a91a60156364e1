"""Questions (``POST /v1/questions``): an agent asks, a pool member answers on the card, the agent hears back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.ids import ANSWER_INPUT, ActionId, BlockId, CallbackId
from bot.sandbox.testing import action_ids
from tests.e2e.conftest import ADA, BEN, CHLOE, DEV, OUTSIDER, TIER1, Stack, callback_endpoint, eventually
from tests.hitl.helpers import hitl

CHOICES = ["Ship it today", "Wait for Monday", "Ask legal first"]


def choice(index: int) -> str:
    return f"{ActionId.ANSWER.value}:{index}"


async def ask(stack: Stack, body: dict[str, Any], *, tenant: str = "acme-support", wait: int = 0) -> tuple[int, Any]:
    return await stack.agent(tenant).call("POST", "/v1/questions", body, wait=wait)


async def kinds(stack: Stack, question_id: str, until: str) -> list[str]:
    async def probe() -> list[str] | None:
        found = [r.kind for r in await stack.audit("acme-support", question_id)]
        return found if until in found else None

    return await eventually(probe, what=f"{until} in the audit of {question_id}")


async def test_a_question_answered_by_a_choice(stack: Stack) -> None:
    status, asked = await ask(
        stack,
        {"question": "Can we ship the refund fix today?", "choices": CHOICES,
         "context": {"reason": "the release train leaves at 5pm", "summary": "Release timing"}},
    )  # fmt: skip
    assert status == 202
    assert (asked["status"], asked["pool"], asked["choices"], asked["answer"]) == (
        "pending", "support_tier_1", CHOICES, None
    )  # fmt: skip
    assert asked["kind"] == "question" and asked["deadline_at"] is not None

    card = await stack.slack.wait_for_message(TIER1, action_id=choice(0))
    shown = repr(card.blocks)
    assert "Can we ship the refund fix today?" in shown and "the release train leaves at 5pm" in shown
    assert action_ids(card) >= {choice(0), choice(1), choice(2), ActionId.REPLY}
    assert ActionId.APPROVE not in action_ids(card)

    await stack.slack.click(BEN, channel=TIER1, action_id=choice(1))
    status, done = await stack.agent().call("GET", f"/v1/questions/{asked['id']}", wait=10)
    assert status == 200 and done["status"] == "answered"
    answer = done["answer"]
    assert (answer["text"], answer["choice"], answer["by"]) == ("Wait for Monday", 1, BEN)
    assert answer["at"] and done["deadline_at"] is None

    # The card keeps the answer and loses its buttons; the thread says who answered what.
    final = await stack.slack.wait_for_message(
        TIER1, predicate=lambda m: m.ts == card.ts and "*Answered*" in repr(m.blocks)
    )
    assert "Wait for Monday" in repr(final.blocks) and f"<@{BEN}>" in repr(final.blocks)
    assert not action_ids(final) & {choice(0), choice(1), ActionId.REPLY}
    await stack.slack.wait_until(
        lambda: any("Wait for Monday" in m.text for m in stack.slack.thread(TIER1, card.ts)) or None,
        what="the answer in the card's thread",
    )
    trail = await kinds(stack, asked["id"], "question.answered")
    assert trail == ["question.asked", "question.answered"]


async def test_a_question_answered_in_free_text(stack: Stack) -> None:
    _, asked = await ask(stack, {"question": "What should I tell customer 4411 about the delay?"})
    card = await stack.slack.wait_for_message(TIER1, action_id=ActionId.REPLY)
    assert not any(a.startswith(ActionId.ANSWER.value + ":") for a in action_ids(card))  # no choices: Reply… only

    await stack.slack.click(ADA, channel=TIER1, action_id=ActionId.REPLY)
    modal = await stack.slack.wait_for_modal(ADA, callback_id=CallbackId.ANSWER_REPLY)
    assert "customer 4411" in repr(modal.data["blocks"])
    text = "Apologise, offer a 10% voucher,\nand say the refund lands Friday."
    await stack.slack.submit_modal(ADA, {f"{BlockId.ANSWER_TEXT}/{ANSWER_INPUT}": text})

    _, done = await stack.agent().call("GET", f"/v1/questions/{asked['id']}", wait=10)
    assert done["status"] == "answered"
    assert (done["answer"]["text"], done["answer"]["choice"], done["answer"]["by"]) == (text, None, ADA)
    await stack.slack.wait_for_message(TIER1, predicate=lambda m: m.ts == card.ts and "voucher" in repr(m.blocks))


async def test_a_long_poll_returns_when_the_question_is_answered(stack: Stack) -> None:
    body = {"question": "Proceed with the migration?", "choices": ["Yes", "No"], "idempotency_key": "mig-1"}
    waiting = asyncio.ensure_future(ask(stack, body, wait=30))
    await stack.slack.wait_for_message(TIER1, action_id=choice(0))
    assert not waiting.done()  # held while nobody has answered
    await stack.slack.click(CHLOE, channel=TIER1, action_id=choice(0))
    status, done = await asyncio.wait_for(waiting, 10)
    assert status == 200 and (done["status"], done["answer"]["text"], done["answer"]["by"]) == (
        "answered",
        "Yes",
        CHLOE,
    )

    # The same key and body: the same question, answered, not a second card.
    status, again = await ask(stack, body)
    assert (status, again["id"], again["answer"]["by"]) == (200, done["id"], CHLOE)
    assert len([m for m in stack.slack.messages(TIER1) if "Proceed with the migration?" in repr(m.blocks)]) == 1
    # The same key with another body is refused.
    status, clash = await ask(stack, {**body, "question": "Proceed with something else?"})
    assert (status, clash["error"]["code"]) == (409, "conflict")


async def test_outsiders_and_second_answers_are_refused_and_audited(stack: Stack) -> None:
    _, asked = await ask(stack, {"question": "Which carrier for order A-7?", "choices": ["DHL", "UPS"]})
    posted = await stack.slack.wait_for_message(TIER1, action_id=choice(0))
    with_buttons = posted.blocks

    await stack.slack.click(OUTSIDER, channel=TIER1, action_id=choice(0))
    await stack.slack.wait_for_ephemeral(OUTSIDER, text="Only members of the pool")
    await stack.slack.click(DEV, channel=TIER1, action_id=ActionId.REPLY)  # tier 2 is not the pool asked
    await stack.slack.wait_for_ephemeral(DEV, text="Only members of the pool")
    assert stack.slack.modal(DEV) is None
    _, still = await stack.agent().call("GET", f"/v1/questions/{asked['id']}")
    assert still["status"] == "pending"

    await stack.slack.click(BEN, channel=TIER1, action_id=choice(1))
    await kinds(stack, asked["id"], "question.answered")
    await stack.slack.wait_for_message(TIER1, predicate=lambda m: m.ts == posted.ts and "*Answered*" in repr(m.blocks))
    # A reviewer whose Slack still shows the buttons (a copy of the card as it was first posted).
    stale = await stack.runtime.bolt.client.chat_postMessage(channel=TIER1, text="old copy", blocks=with_buttons)
    delivery = await stack.emulator.click(ADA, channel=TIER1, message_ts=stale["ts"], action_id=choice(0))
    assert delivery.ok
    await stack.slack.wait_for_ephemeral(ADA, text="already been answered")

    _, done = await stack.agent().call("GET", f"/v1/questions/{asked['id']}")
    assert (done["answer"]["text"], done["answer"]["by"]) == ("UPS", BEN)
    refused = [(r.actor, r.payload["refusal"]) for r in await stack.audit("acme-support", asked["id"])
               if r.kind == "question.refused"]  # fmt: skip
    assert refused == [(OUTSIDER, "not_in_pool"), (DEV, "not_in_pool"), (ADA, "already_answered")]


async def test_the_agent_withdraws_a_pending_question(stack: Stack) -> None:
    _, asked = await ask(stack, {"question": "Refund order A-9 in full?", "choices": ["Yes", "No"]})
    posted = await stack.slack.wait_for_message(TIER1, action_id=choice(0))
    with_buttons = posted.blocks
    polling = asyncio.ensure_future(stack.agent().call("GET", f"/v1/questions/{asked['id']}", wait=30))
    await asyncio.sleep(0.2)
    assert not polling.done()  # held while it is pending

    status, withdrawn = await stack.agent().call("POST", f"/v1/questions/{asked['id']}/cancel", {})
    assert status == 200
    assert (withdrawn["id"], withdrawn["kind"], withdrawn["status"], withdrawn["answer"]) == (
        asked["id"], "question", "cancelled", None
    )  # fmt: skip
    assert withdrawn["closed_at"] is not None and withdrawn["deadline_at"] is None
    status, polled = await asyncio.wait_for(polling, 10)  # the long poll returns at once
    assert (status, polled["status"]) == (200, "cancelled")

    # The card is updated in place: no buttons, and it says the agent withdrew it; so does its thread.
    final = await stack.slack.wait_for_message(
        TIER1, predicate=lambda m: m.ts == posted.ts and "Withdrawn by the agent" in repr(m.blocks)
    )
    assert not action_ids(final) & {choice(0), choice(1), ActionId.REPLY}
    assert "Refund order A-9 in full?" in repr(final.blocks) and final.text.startswith("Withdrawn by the agent")
    await stack.slack.wait_until(
        lambda: any("withdrew this question" in m.text for m in stack.slack.thread(TIER1, posted.ts)) or None,
        what="the withdrawal in the card's thread",
    )
    trail = await kinds(stack, asked["id"], "question.cancelled")
    assert trail == ["question.asked", "question.cancelled"]
    cancelled = next(r for r in await stack.audit("acme-support", asked["id"]) if r.kind == "question.cancelled")
    assert cancelled.actor == "agent"

    # A second cancel is refused as a request's is; reading it says cancelled.
    status, again = await stack.agent().call("POST", f"/v1/questions/{asked['id']}/cancel", {})
    assert (status, again["error"]["code"]) == (409, "conflict")
    assert again["error"]["message"] == f"question '{asked['id']}' is already cancelled"
    _, read = await stack.agent().call("GET", f"/v1/questions/{asked['id']}")
    assert read["status"] == "cancelled"

    # A reviewer whose Slack still shows the buttons is told it is closed; nothing is recorded but the refusal.
    stale = await stack.runtime.bolt.client.chat_postMessage(channel=TIER1, text="old copy", blocks=with_buttons)
    delivery = await stack.emulator.click(BEN, channel=TIER1, message_ts=stale["ts"], action_id=choice(0))
    assert delivery.ok
    await stack.slack.wait_for_ephemeral(BEN, text="withdrew it")
    refused = [(r.actor, r.payload["refusal"]) for r in await stack.audit("acme-support", asked["id"])
               if r.kind == "question.refused"]  # fmt: skip
    assert refused == [(BEN, "closed")]
    _, still = await stack.agent().call("GET", f"/v1/questions/{asked['id']}")
    assert (still["status"], still["answer"]) == ("cancelled", None)


async def test_an_answered_question_or_another_id_cannot_be_withdrawn(stack: Stack) -> None:
    _, asked = await ask(stack, {"question": "Which carrier for order A-8?", "choices": ["DHL", "UPS"]})
    await stack.slack.wait_for_message(TIER1, action_id=choice(0))
    await stack.slack.click(BEN, channel=TIER1, action_id=choice(1))
    _, done = await stack.agent().call("GET", f"/v1/questions/{asked['id']}", wait=10)
    assert done["status"] == "answered"
    status, refused = await stack.agent().call("POST", f"/v1/questions/{asked['id']}/cancel", {})
    assert (status, refused["error"]["code"]) == (409, "conflict")
    assert refused["error"]["message"] == f"question '{asked['id']}' is already answered"
    _, still = await stack.agent().call("GET", f"/v1/questions/{asked['id']}")
    assert (still["status"], still["answer"]["text"]) == ("answered", "UPS")
    assert "question.cancelled" not in [r.kind for r in await stack.audit("acme-support", asked["id"])]

    # An unknown id, a request's id and another tenant's question are 404s, and change nothing.
    _, request = await stack.agent().ask("process_refund", {"amount": 10, "currency": "EUR", "order_id": "A-2",
                                                            "customer": {"name": "Ana"}, "card_number": "4111"})  # fmt: skip
    _, pending = await ask(stack, {"question": "Is the VIP list current?"})
    for agent, question_id in (
        (stack.agent(), "q_doesnotexist"),
        (stack.agent(), request["id"]),
        (stack.agent("platform"), pending["id"]),
    ):
        status, missing = await agent.call("POST", f"/v1/questions/{question_id}/cancel", {})
        assert (status, missing["error"]["code"]) == (404, "not_found"), question_id
    _, request_now = await stack.agent().call("GET", f"/v1/requests/{request['id']}")
    _, pending_now = await stack.agent().call("GET", f"/v1/questions/{pending['id']}")
    assert (request_now["status"], pending_now["status"]) == (request["status"], "pending")
    status, _ = await stack.agent().call("POST", f"/v1/questions/{pending['id']}/cancel")  # no body, as for requests
    assert status == 200


async def test_an_async_question_withdrawn_calls_the_agent_back(stack: Stack) -> None:
    async with callback_endpoint() as endpoint:
        body = {"question": "Approve the wording?", "choices": ["Yes", "No"], "mode": "async",
                "callback_url": endpoint.url}  # fmt: skip
        _, asked = await ask(stack, body)
        await stack.slack.wait_for_message(TIER1, action_id=choice(0))
        status, _ = await stack.agent().call("POST", f"/v1/questions/{asked['id']}/cancel", {})
        assert status == 200
        await endpoint.wait_for(1)
    delivered = json.loads(endpoint.received[0][0])
    assert (delivered["id"], delivered["kind"], delivered["status"], delivered["answer"]) == (
        asked["id"], "question", "cancelled", None
    )  # fmt: skip


async def test_questions_and_requests_and_tenants_do_not_mix(stack: Stack) -> None:
    _, asked = await ask(stack, {"question": "Is the VIP list current?"})
    status, other = await stack.agent("platform").call("GET", f"/v1/questions/{asked['id']}")
    assert (status, other["error"]["code"]) == (404, "not_found")
    status, _ = await stack.agent().call("GET", f"/v1/requests/{asked['id']}")
    assert status == 404
    status, _ = await stack.agent().call("GET", f"/v1/requests/{asked['id']}", wait=2)
    assert status == 404
    status, _ = await stack.agent().call("POST", f"/v1/requests/{asked['id']}/cancel")
    assert status == 404
    _, request = await stack.agent().ask("process_refund", {"amount": 10, "currency": "EUR", "order_id": "A-1",
                                                            "customer": {"name": "Ana"}, "card_number": "4111"})  # fmt: skip
    status, _ = await stack.agent().call("GET", f"/v1/questions/{request['id']}")
    assert status == 404


async def test_a_question_is_checked_at_the_door(stack: Stack) -> None:
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("platform", {"question": "Who is on call?"}, 422, "no_pool"),  # no pool named, no default_pool
        ("acme-support", {"question": "Who?", "pool": "nobody_here"}, 422, "unknown_pool"),
        ("acme-support", {"question": "Who?", "choices": [str(i) for i in range(11)]}, 422, "invalid"),
        ("acme-support", {"question": "Who?", "choices": ["x" * 76]}, 422, "invalid"),
        ("acme-support", {"question": "Who?", "choices": ["  "]}, 422, "invalid"),
        ("acme-support", {"question": "Who?", "choices": []}, 422, "invalid"),
        ("acme-support", {"question": ""}, 422, "invalid"),
        ("acme-support", {"question": "Who?", "action": "x"}, 422, "invalid"),
        ("acme-support", {"question": "Who?", "callback_url": "https://evil.example/x"}, 422, "callback_not_allowed"),
    ]
    for tenant, body, status, code in cases:
        got, answer = await ask(stack, body, tenant=tenant)
        assert (got, answer["error"]["code"]) == (status, code), (body, answer)
    # A pool named in the body is asked instead of the default one.
    status, asked = await ask(stack, {"question": "Escalate ticket 88?", "pool": "support_tier_2"})
    assert (status, asked["pool"]) == (202, "support_tier_2")


async def test_an_async_question_calls_the_agent_back_with_its_answer(stack: Stack) -> None:
    async with callback_endpoint() as endpoint:
        body = {"question": "Approve the wording?", "choices": ["Yes", "No"], "mode": "async",
                "callback_url": endpoint.url}  # fmt: skip
        status, asked = await ask(stack, body, wait=30)
        assert (status, asked["status"], asked["mode"]) == (202, "pending", "async")  # not held: async
        await stack.slack.click(BEN, channel=TIER1, action_id=choice(0))
        await endpoint.wait_for(1)
    delivered = json.loads(endpoint.received[0][0])
    assert (delivered["id"], delivered["kind"], delivered["status"]) == (asked["id"], "question", "answered")
    assert (delivered["answer"]["text"], delivered["answer"]["by"]) == ("Yes", BEN)


async def test_the_client_asks_and_gets_the_answer(stack: Stack) -> None:
    from countersign_client import ApiError, AsyncCountersign

    async with AsyncCountersign(stack.url, api_key=stack.keys["acme-support"]) as client:
        asking = asyncio.ensure_future(client.ask_question("Which warehouse ships order A-12?", ["Lyon", "Porto"]))
        await stack.slack.wait_for_message(TIER1, action_id=choice(1))
        await stack.slack.click(CHLOE, channel=TIER1, action_id=choice(1))
        got = await asyncio.wait_for(asking, 10)
        assert got.answer is not None and (got.answer.text, got.answer.choice, got.answer.by) == ("Porto", 1, CHLOE)
        assert (await client.get_question(got.id)).status == "answered"
        pending = await client.ask_question("Which warehouse ships order A-13?", wait=0)
        withdrawn = await client.cancel_question(pending.id)
        assert (withdrawn.id, withdrawn.status, withdrawn.answer) == (pending.id, "cancelled", None)
        with pytest.raises(ApiError) as refused:
            await client.cancel_question(pending.id)
        assert (refused.value.status, refused.value.code) == (409, "conflict")


async def test_a_delegate_answers_for_the_member_they_stand_in_for(stack: Stack) -> None:
    """Chloe is away and Dev (tier 2) votes for her: he may answer tier 1's question too, as he may approve
    its requests; not a question asked on Chloe's behalf."""
    said = await hitl(stack, CHLOE, f"delegate <@{DEV}>")
    assert "votes for you" in said
    _, mine = await ask(
        stack, {"question": "Refund the duplicate?", "choices": CHOICES, "context": {"on_behalf_of": CHLOE}}
    )
    _, asked = await ask(stack, {"question": "Ship the fix today?", "choices": CHOICES})

    await stack.slack.wait_for_message(TIER1, text="Refund the duplicate?", action_id=choice(0))
    await stack.slack.click(DEV, channel=TIER1, action_id=choice(0), text="Refund the duplicate?")
    await stack.slack.wait_for_ephemeral(DEV, text="on your behalf")
    _, still = await stack.agent().call("GET", f"/v1/questions/{mine['id']}")
    assert still["status"] == "pending"

    await stack.slack.wait_for_message(TIER1, text="Ship the fix today?", action_id=choice(0))
    await stack.slack.click(DEV, channel=TIER1, action_id=choice(2), text="Ship the fix today?")
    _, done = await stack.agent().call("GET", f"/v1/questions/{asked['id']}", wait=10)
    assert done["status"] == "answered" and (done["answer"]["text"], done["answer"]["by"]) == ("Ask legal first", DEV)
