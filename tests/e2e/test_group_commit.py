"""A burst of agent submissions: they share transactions (group commit), yet each gets its own answer."""

from __future__ import annotations

import asyncio
import re

from bot.ids import ActionId
from tests.e2e.conftest import TIER1, Stack, refund


async def test_a_burst_shares_transactions_and_each_submission_gets_its_own_answer(stack: Stack) -> None:
    agent = stack.agent()
    status, taken = await agent.ask("process_refund", refund("A-0"), idempotency_key="taken")
    assert status == 202

    small = [agent.ask("process_refund", {**refund(f"S-{i}"), "amount": 20}) for i in range(30)]
    large = [agent.ask("process_refund", refund(f"L-{i}")) for i in range(10)]
    conflict = agent.ask("process_refund", refund("other"), idempotency_key="taken")
    twins = [agent.ask("process_refund", refund("T-1"), idempotency_key="twin") for _ in range(2)]
    answers = await asyncio.gather(*small, *large, conflict, *twins)

    auto, review, (conflict_status, conflict_body), *twin_answers = (
        answers[:30], answers[30:40], answers[40], *answers[41:]
    )  # fmt: skip
    assert {(s, b["status"]) for s, b in auto} == {(200, "auto_approved")}
    assert {(s, b["status"]) for s, b in review} == {(202, "pending")}
    # One submission's error is its own: its batch-mates were written.
    assert conflict_status == 409 and conflict_body["error"]["code"] == "conflict"
    # Two submissions with one key never share a batch: the second replays the first.
    assert twin_answers[0][1]["id"] == twin_answers[1][1]["id"]
    assert len({b["id"] for _, b in answers if "id" in b} | {taken["id"]}) == 30 + 10 + 1 + 1

    # Every request awaiting review gets exactly one card.
    for _, body in [*review, twin_answers[0], (202, taken)]:
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text=body["id"])
    for _, body in [*review, twin_answers[0]]:
        cards = [m for m in stack.slack.messages(TIER1) if body["id"] in repr(m.blocks)]
        assert len(cards) == 1
    # ...and an audit trail of its own.
    for _, body in review:
        kinds = [r.kind for r in await stack.audit("acme-support", body["id"])]
        assert kinds[:1] == ["request.created"]

    # The burst took fewer transactions than submissions.
    async with stack.http.get(stack.url + "/metrics") as resp:
        text = await resp.text()
    batches = float(re.search(r"^countersign_intake_batch_size_count (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    submissions = float(re.search(r"^countersign_intake_batch_size_sum (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert submissions == 1 + 43
    assert batches < submissions
