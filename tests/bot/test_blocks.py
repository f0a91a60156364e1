"""Cards and modals: what a reviewer sees, within Slack's Block Kit limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.blocks import Card, VoteLine, card_text, reject_modal, request_card
from bot.ids import ActionId
from bot.payloads import CardRef
from bot.reviewblocks import Details, TrailLine, details_modal
from policy.types import Choice, Risk, Status

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def card(**kw: Any) -> Card:
    base: dict[str, Any] = {
        "tenant": "acme",
        "request_id": "req_1",
        "action": "process_refund",
        "summary": "Refund $620 to Ana",
        "params": {"amount": 620, "card_number": "••••••"},
        "status": Status.PENDING,
        "approvals_required": 2,
        "deadline_at": NOW,
        "pool": "support_tier_1",
        "requested_by": "refund-bot",
        "on_behalf_of": "U0ANA",
        "agent_reason": "Customer was double charged",
    }
    base.update(kw)
    return Card(**base)


def texts(blocks: list[dict[str, Any]]) -> str:
    return repr(blocks)


def validate(blocks: list[dict[str, Any]]) -> None:
    """slack_sdk's models enforce Slack's documented limits and raise on violations."""
    for block in Block.parse_all(blocks):
        block.validate_json()


def test_pending_card_shows_what_who_deadline_progress_and_buttons() -> None:
    blocks = request_card(card(votes=[VoteLine("U1", Choice.APPROVE, NOW)]))
    validate(blocks)
    text = texts(blocks)
    assert "Approval needed: Refund $620 to Ana" in text
    assert "*refund-bot* asks to run `process_refund` for *acme* on behalf of <@U0ANA>" in text
    assert "Approvals *1 of 2*" in text
    assert "<!date^1795262400^" in text
    assert "Request `req_1`" in text
    actions = blocks[-1]["elements"]
    assert [a["action_id"] for a in actions] == [ActionId.APPROVE, ActionId.REJECT, ActionId.DETAILS]
    assert CardRef.loads(actions[0]["value"]) == CardRef(t="acme", r="req_1")


def test_masked_params_stay_masked() -> None:
    assert "••••••" in texts(request_card(card()))


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (Status.APPROVED, ":white_check_mark: *Approved* by <@U1>"),
        (Status.REJECTED, ":x: *Rejected* by <@U1>"),
        (Status.EXPIRED, ":hourglass: *Expired*"),
        (Status.CANCELLED, ":no_entry_sign: *Cancelled by the agent*"),
    ],
)
def test_decided_card_has_no_buttons_and_keeps_the_outcome(status: Status, line: str) -> None:
    blocks = request_card(card(status=status, decided_by="U1", decided_at=NOW, decision_reason="looks wrong"))
    validate(blocks)
    assert not [b for b in blocks if b["type"] == "actions"]
    assert line in texts(blocks)
    assert "looks wrong" in texts(blocks)
    assert "Approval needed" not in texts(blocks)


def test_escalated_card_says_so_and_stays_actionable() -> None:
    blocks = request_card(card(escalated_to="C0SENIOR"))
    assert "Escalated to <#C0SENIOR>; votes here still count." in texts(blocks)
    assert blocks[-1]["type"] == "actions"


def test_limits_hold_for_huge_inputs() -> None:
    params = {f"field_{i}": "x" * 5000 for i in range(40)}
    blocks = request_card(card(summary="S" * 500, params=params, agent_reason="r" * 5000))
    validate(blocks)
    fields = next(b for b in blocks if "fields" in b)["fields"]
    assert len(fields) == 10
    assert fields[-1]["text"] == "_…and 31 more: see Details_"
    assert len(blocks[0]["text"]["text"]) == 150


def test_reject_modal_requires_a_reason_and_carries_the_ref() -> None:
    modal = reject_modal(CardRef(t="acme", r="req_1"), "Refund $620")
    View(**modal).validate_json()
    assert CardRef.loads(modal["private_metadata"]).request_id == "req_1"
    element = modal["blocks"][1]["element"]
    assert element["min_length"] >= 1 and modal["blocks"][1].get("optional") is not True


def test_details_modal_lists_the_trail() -> None:
    trail = [TrailLine(NOW, "request.created", "refund-bot", "policy: review"), TrailLine(NOW, "vote", "U1", "approve")]
    modal = details_modal(Details(card=card(), context={"reason": "double charge"}, trail=trail))
    View(**modal).validate_json()
    text = texts(modal["blocks"])
    assert "request.created" in text and "<@U1>" in text and "double charge" in text


def test_notification_text() -> None:
    assert card_text(card()) == "Approval needed (acme): Refund $620 to Ana"
    assert card_text(card(status=Status.APPROVED)) == "Refund $620 to Ana: approved"


def test_a_card_shows_risk_a_relative_deadline_and_nested_params_as_fields() -> None:
    shown = texts(
        request_card(card(risk=Risk.HIGH, params={"amount": 620, "customer": {"name": "Ana", "tier": "gold"}}))
    )
    assert ":large_orange_circle: *high* risk" in shown
    assert "^{ago}, {date_short_pretty} at {time}|" in shown  # "in 12 minutes, Nov 21 at 13:00" in Slack
    assert "*customer.name*\\nAna" in shown and "*customer.tier*\\ngold" in shown and '{"name"' not in shown


def test_an_escalated_card_shows_its_own_deadline_and_the_next_stages() -> None:
    own, later = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 10, tzinfo=UTC)
    shown = texts(request_card(card(deadline_at=own, escalated_to="C0SUPPORT2", escalated_deadline_at=later)))
    context, escalated = shown.split("Escalated to <#C0SUPPORT2>")
    assert f"Deadline <!date^{int(own.timestamp())}^" in context and "Pool `support_tier_1`" in context
    assert (
        escalated.startswith(f", deadline <!date^{int(later.timestamp())}^") and "votes here still count" in escalated
    )


def test_a_card_names_who_can_approve_or_counts_them() -> None:
    assert "Can approve: <@U1> <@U2>" in texts(request_card(card(approvers=("U1", "U2"))))
    assert "Can approve: 7 people" in texts(request_card(card(approvers=tuple(f"U{i}" for i in range(7)))))
    assert "Nobody present can approve now" in texts(request_card(card(approvers=())))
    assert "Can approve" not in texts(request_card(card(approvers=("U1",), status=Status.APPROVED)))
