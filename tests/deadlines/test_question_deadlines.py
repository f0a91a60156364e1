"""A question nobody answers expires at its deadline: the agent is told, the card says so, late clicks are refused."""

from __future__ import annotations

from bot.clock import FrozenClock
from bot.ids import ActionId
from tests.deadlines.test_deadlines import audit_kinds
from tests.e2e.conftest import BEN, TIER1, TIER2, Stack


async def test_an_unanswered_question_expires_in_its_pool(timed: Stack, clock: FrozenClock) -> None:
    body = {"question": "Refund the shipping too?", "choices": ["Yes", "No"], "timeout_seconds": 600}
    _, asked = await timed.agent().call("POST", "/v1/questions", body)
    card = await timed.slack.wait_for_message(TIER1, action_id=f"{ActionId.ANSWER}:0")
    with_buttons = card.blocks  # an update replaces a message's blocks
    clock.advance(9 * 60)
    assert [f.action for f in await timed.runtime.keeper.run_due()] == []  # the reminder only: not due yet
    await timed.slack.wait_until(
        lambda: any("this question needs an answer" in m.text for m in timed.slack.thread(TIER1, card.ts)) or None,
        what="the reminder in the question's thread",
    )
    clock.advance(60)
    fired = await timed.runtime.keeper.run_due()
    # A question is asked of one pool: its deadline expires it, it never escalates to the fallback.
    assert [(f.request_id, f.action) for f in fired] == [(asked["id"], "expired")]
    _, done = await timed.agent().call("GET", f"/v1/questions/{asked['id']}")
    assert (done["status"], done["answer"], done["pool"]) == ("expired", None, "support_tier_1")
    assert done["closed_at"] is not None and done["deadline_at"] is None
    assert not timed.slack.messages(TIER2)

    final = await timed.slack.wait_for_message(
        TIER1, predicate=lambda m: m.ts == card.ts and "Expired" in repr(m.blocks)
    )
    assert f"{ActionId.ANSWER}:0" not in repr(final.blocks)
    # A click on a copy of the card from before: refused, told, audited.
    stale = await timed.runtime.bolt.client.chat_postMessage(channel=TIER1, text="old copy", blocks=with_buttons)
    await timed.emulator.click(BEN, channel=TIER1, message_ts=stale["ts"], action_id=f"{ActionId.ANSWER}:0")
    await timed.slack.wait_for_ephemeral(BEN, text="This question is closed")
    kinds = await audit_kinds(timed, "acme-support", asked["id"])
    assert kinds[:2] == ["question.asked", "request.reminded"] and "question.expired" in kinds
    assert kinds[-1] == "question.refused"
    clock.advance(3600)
    assert await timed.runtime.keeper.run_due() == []  # nothing fires twice
