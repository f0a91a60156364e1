"""``/hitl show`` on a question: what was asked and what was answered, not an action's approvals."""

from __future__ import annotations

from tests.e2e.conftest import ADA, BEN, TIER1, Stack
from tests.e2e.test_questions import CHOICES, ask, choice
from tests.hitl.helpers import hitl


async def test_hitl_show_a_question_says_what_was_asked_and_answered(stack: Stack) -> None:
    _, asked = await ask(stack, {"question": "Can we ship the refund fix today?", "choices": CHOICES})
    pending = await hitl(stack, ADA, f"show {asked['id']}")
    assert "Can we ship the refund fix today?" in pending and "Pending* · question" in pending, pending
    assert "Approvals" not in pending

    await stack.slack.wait_for_message(TIER1, action_id=choice(0))
    await stack.slack.click(BEN, channel=TIER1, action_id=choice(1))
    status, _ = await stack.agent().call("GET", f"/v1/questions/{asked['id']}", wait=10)
    assert status == 200
    shown = await hitl(stack, ADA, f"show {asked['id']}")
    assert "*Answered* · question" in shown and f"*Answer* by <@{BEN}>" in shown and "Wait for Monday" in shown, shown
    assert "Approvals" not in shown and "Pending" not in shown
