"""The bulk approval views at their largest stay within Slack's limits, and say what each request shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.home.bulk_blocks import preflight_modal, result_modal, select_modal
from bot.payloads import BulkRef
from bot.sandbox.blockkit import check_view
from bot.service.bulk import BULK_MAX, BulkItem, BulkOutcome
from policy import Refusal, Risk, Status

REF = BulkRef(t="acme-support", a="process_refund")


def item(n: int, *, status: Status = Status.PENDING, refusal: Refusal | None = None) -> BulkItem:
    params = {"amount": 600 + n, "currency": "EUR", "customer": {"name": "Ana" * 40}, "card_number": "••••••"}
    return BulkItem(
        tenant="acme-support",
        request_id=f"{n:032x}",
        action="process_refund",
        summary=f"Refund €{600 + n} to a customer whose name is long " * 4,
        risk=Risk.HIGH,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        params=params,
        status=status,
        approvals=0,
        approvals_required=1,
        refusal=refusal,
    )


def test_the_largest_bulk_approval_fits_in_slacks_views() -> None:
    items = [item(n) for n in range(BULK_MAX)]
    views = [
        select_modal(REF, items, more=7),
        preflight_modal(REF, items),
        result_modal(
            [BulkOutcome(i.request_id, item(n, status=Status.APPROVED), decided=True) for n, i in enumerate(items)]
        ),
    ]
    for view in views:
        assert check_view(view) == [], json.dumps(view)[:500]
    select, check, result = views
    options = select["blocks"][1]["element"]["options"]
    assert len(options) == BULK_MAX and all(len(o["text"]["text"]) <= 75 for o in options)
    assert len(check["private_metadata"]) <= 3000
    assert BulkRef.loads(check["private_metadata"]).request_ids == tuple(i.request_id for i in items)
    assert check["submit"]["text"] == f"Approve all {BULK_MAX}"
    assert "50 of 50 approvals counted" in json.dumps(result)


def test_the_check_says_once_what_all_share_and_per_request_what_differs() -> None:
    check = preflight_modal(REF, [item(1), item(2, refusal=Refusal.OWN_REQUEST)])
    shared, first, second = check["blocks"][1:]
    assert [f["text"].split("\n")[0] for f in shared["fields"]] == ["*currency*", "*customer.name*", "*card_number*"]
    assert [f["text"] for f in first["fields"]] == ["*amount*\n601"]
    assert "will be refused" not in first["text"]["text"]
    assert "will be refused: it acts on your behalf" in second["text"]["text"]


def test_the_result_lists_each_refusal_with_its_reason() -> None:
    outcomes = [
        BulkOutcome("a" * 32, item(1, status=Status.APPROVED), decided=True),
        BulkOutcome("b" * 32, item(2, status=Status.APPROVED), Refusal.ALREADY_DECIDED),
        BulkOutcome("c" * 32, None),
        BulkOutcome("d" * 32, item(4), failed=True),
    ]
    text = json.dumps(result_modal(outcomes), ensure_ascii=False)
    assert "1 of 4 approvals counted" in text and "Refused (3)" in text
    assert f"`{'b' * 32}`: it was decided meanwhile" in text
    assert f"`{'c' * 32}`: no such request any more" in text
    assert "nothing was recorded" in text
