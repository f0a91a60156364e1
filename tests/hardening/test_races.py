"""Racing clicks: 100 reviewers at once, and clicks racing the agent's cancel. Exactly one decision.

Each click is a real signed HTTP request to the service; all are sent together. Every click ends
up in the audit (``vote.cast`` or ``click.refused``), and the card shows the one decision.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from bot.blocks import STATUS_LINE
from bot.ids import ActionId
from bot.sandbox.testing import action_ids
from policy.types import Status
from tests.e2e.conftest import Stack, eventually
from tests.hardening.conftest import SWARM, SWARM_MEMBERS

CLICK_KINDS = ("vote.cast", "click.refused")


async def _clicks(stack: Stack, request_id: str) -> Counter[str]:
    return Counter(r.kind for r in await stack.audit("swarm", request_id) if r.kind in CLICK_KINDS)


async def _all_audited(stack: Stack, request_id: str, n: int) -> Counter[str]:
    async def probe() -> Counter[str] | None:
        counts = await _clicks(stack, request_id)
        return counts if sum(counts.values()) >= n else None

    return await eventually(probe, what=f"{n} audited clicks", timeout=30)


async def _final_card(stack: Stack, status: Status) -> None:
    await stack.slack.wait_for_message(
        SWARM,
        predicate=lambda m: STATUS_LINE[status] in repr(m.blocks) and ActionId.APPROVE not in action_ids(m),
        timeout=15,
    )
    assert len(stack.slack.messages(SWARM)) == 1  # one card, updated in place


async def test_100_people_click_approve_at_once_one_decision(stack: Stack) -> None:
    status, body = await stack.agent("swarm").ask("three_votes", {"n": 100})
    assert status == 202, body
    card = await stack.slack.wait_for_message(SWARM, action_id=ActionId.APPROVE)
    deliveries = await asyncio.gather(
        *(stack.slack.click(u, channel=SWARM, action_id=ActionId.APPROVE, message_ts=card.ts) for u in SWARM_MEMBERS)
    )
    assert [d.error for d in deliveries if not d.ok] == []  # every click was acked within Slack's 3 s
    counts = await _all_audited(stack, body["id"], len(SWARM_MEMBERS))
    assert counts == Counter({"vote.cast": 3, "click.refused": 97})
    records = await stack.audit("swarm", body["id"])
    assert [r.kind for r in records].count("request.decided") == 1
    refused = [r for r in records if r.kind == "click.refused"]
    assert {r.payload["refusal"] for r in refused} == {"already_decided"}
    voters = {r.actor for r in records if r.kind == "vote.cast"}
    assert len(voters) == 3 and {r.actor for r in refused} | voters == set(SWARM_MEMBERS)  # each click, once
    _, done = await stack.agent("swarm").call("GET", f"/v1/requests/{body['id']}")
    assert done["status"] == "approved" and {v["user"] for v in done["votes"]} == voters
    assert done["decision"]["by"] in voters
    await _final_card(stack, Status.APPROVED)


async def test_clicks_racing_a_cancel_one_decision_every_click_audited(stack: Stack) -> None:
    outcomes: Counter[str] = Counter()
    for round_ in range(3):
        status, body = await stack.agent("swarm").ask("three_votes", {"round": round_})
        assert status == 202
        await stack.slack.wait_until(lambda r=round_: len(stack.slack.messages(SWARM)) == r + 1, what="the card")
        card = stack.slack.messages(SWARM)[-1]
        clickers = SWARM_MEMBERS[round_ * 30 : round_ * 30 + 30]
        # The cancel goes in the middle of the burst.
        clicks = [stack.slack.click(u, channel=SWARM, action_id=ActionId.APPROVE, message_ts=card.ts) for u in clickers]
        cancel = stack.agent("swarm").call("POST", f"/v1/requests/{body['id']}/cancel")
        results = await asyncio.gather(*clicks[:15], cancel, *clicks[15:])
        cancel_status, cancel_body = results.pop(15)
        assert all(d.ok for d in results)
        counts = await _all_audited(stack, body["id"], len(clickers))
        records = await stack.audit("swarm", body["id"])
        kinds = [r.kind for r in records]
        assert kinds.count("request.decided") + kinds.count("request.cancelled") == 1, kinds
        _, final = await stack.agent("swarm").call("GET", f"/v1/requests/{body['id']}")
        if "request.cancelled" in kinds:
            assert cancel_status == 200 and final["status"] == "cancelled"
            assert counts["vote.cast"] <= 2 and final["decision"]["by"] == "agent"
            expected = Status.CANCELLED
        else:
            assert cancel_status == 409 and cancel_body["error"]["code"] == "conflict"
            assert counts["vote.cast"] == 3 and final["status"] == "approved"
            expected = Status.APPROVED
        assert counts["vote.cast"] + counts["click.refused"] == len(clickers)
        assert len(final["votes"]) == counts["vote.cast"]
        outcomes[expected.value] += 1
        await stack.slack.wait_for_message(
            SWARM,
            predicate=lambda m, ts=card.ts, s=expected: (
                m.ts == ts and STATUS_LINE[s] in repr(m.blocks) and ActionId.APPROVE not in action_ids(m)
            ),
        )
    assert sum(outcomes.values()) == 3


async def test_double_clicks_sent_together_count_once_each(stack: Stack) -> None:
    """Clicks that arrive together are counted in one batch; a reviewer's second click in it is refused."""
    status, body = await stack.agent("swarm").ask("three_votes", {"double": True})
    assert status == 202
    card = await stack.slack.wait_for_message(SWARM, action_id=ActionId.APPROVE)
    twice = [u for u in SWARM_MEMBERS[:2] for _ in range(2)]
    deliveries = await asyncio.gather(
        *(stack.slack.click(u, channel=SWARM, action_id=ActionId.APPROVE, message_ts=card.ts) for u in twice)
    )
    assert all(d.ok for d in deliveries)
    assert await _all_audited(stack, body["id"], len(twice)) == Counter({"vote.cast": 2, "click.refused": 2})
    refused = [r for r in await stack.audit("swarm", body["id"]) if r.kind == "click.refused"]
    assert sorted(r.actor for r in refused) == sorted(SWARM_MEMBERS[:2])
    assert {r.payload["refusal"] for r in refused} == {"duplicate"}
    _, still = await stack.agent("swarm").call("GET", f"/v1/requests/{body['id']}")
    assert still["status"] == "pending" and len(still["votes"]) == 2
