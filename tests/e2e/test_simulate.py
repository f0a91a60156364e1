"""``countersign simulate``: a week of real traffic replayed through a candidate manifest reports what a
person replaying it by hand finds, and the database is exactly as it was afterwards."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.clock import FrozenClock
from bot.ids import ActionId
from bot.service.models import CreateRequest
from store.engine import create_engine
from store.models import Base
from tests.deadlines.conftest import started
from tests.e2e.conftest import BEN, MANIFESTS, TIER1, Stack
from tests.serviceproc import cli

# The candidate: refunds up to 800 need nobody, above 1400 are refused; account closures go to the seniors.
CANDIDATE_EDITS = [
    ("    if: amount > 500\n", "    if: amount > 800\n    deny_if: amount > 1400\n"),
    ("    reviewer: support_tier_2\n", "    reviewer: senior_support\n"),
]
REFUNDS = (100, 600, 900, 1500)  # per day; the 600 of the first three days approved by Ben after 1, 2, 3 min
DAYS = 7


def candidate(tmp_path: Path) -> Path:
    text = (MANIFESTS / "acme-support.yaml").read_text()
    for old, new in CANDIDATE_EDITS:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "candidate.yaml"
    path.write_text(text)
    return path


async def a_week(stack: Stack, clock: FrozenClock) -> None:
    """Six requests a day for a week: four refunds, an account closure and a small goodwill credit."""
    intake = stack.runtime.intake
    for day in range(DAYS):
        for amount in REFUNDS:
            order = f"D{day}-{amount}"
            params = {"amount": amount, "currency": "EUR", "customer": {"name": "Ana"}, "order_id": order}
            asked, _ = await intake.submit(
                "acme-support", "agent", CreateRequest(action="process_refund", params=params)
            )
            if amount == 600 and day < 3:
                await stack.slack.wait_for_message(TIER1, text=order, action_id=ActionId.APPROVE)
                clock.advance(60 * (day + 1))
                await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE, text=order)
                _, got = await stack.agent().call("GET", f"/v1/requests/{asked.id}")
                assert got["status"] == "approved"
        await intake.submit("acme-support", "agent", CreateRequest(action="close_account", params={"id": day}))
        credit = {"amount": 10, "customer": {"tier": "standard"}}
        await intake.submit("acme-support", "agent", CreateRequest(action="send_goodwill_credit", params=credit))
        clock.advance(24 * 3600)


async def snapshot(db_url: str) -> str:
    """Every row of every table, hashed: equal before and after means nothing was written."""
    digest = hashlib.sha256()
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = (await conn.execute(select(table))).all()
                digest.update(f"{table.name}:{sorted(map(repr, rows))}".encode())
    finally:
        await engine.dispose()
    return digest.hexdigest()


async def test_a_week_replayed_reports_what_replaying_by_hand_finds(db_url: str, tmp_path: Path) -> None:
    clock = FrozenClock(datetime.now(UTC) - timedelta(days=8))
    async with started(db_url, clock) as stack:
        await a_week(stack, clock)
    before = await snapshot(db_url)  # with the service stopped: nothing else writes meanwhile
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERSIGN_")}
    out = await cli(
        {**env, "COUNTERSIGN_DATABASE_URL": db_url}, "simulate", "acme-support", "--manifest", str(candidate(tmp_path)),
        "--since", "9d", "--format", "json",
    )  # fmt: skip
    text = await cli(
        {**env, "COUNTERSIGN_DATABASE_URL": db_url}, "simulate", "acme-support", "--manifest", str(candidate(tmp_path)),
        "--since", "9d",
    )  # fmt: skip
    assert await snapshot(db_url) == before
    assert "14 fewer cards, 7 requests newly denied" in text, text
    assert "3 approved requests that would now be auto-approved" in text, text
    report: dict[str, Any] = json.loads(out)

    # By hand: per day the 600 refund is now auto-approved and the 1500 one denied; 900 and 100 refunds
    # and the credit go as they went; the closure goes to the seniors instead of tier 2.
    assert report["requests"] == 6 * DAYS
    assert report["unchanged"] == 3 * DAYS
    changes = {(c["action"], c["kind"]): (c["count"], c["before"], c["after"]) for c in report["changes"]}
    tier1 = "review by support_tier_1 (1 approval)"
    assert changes == {
        ("process_refund", "auto-approve"): (DAYS, tier1, "auto-approve"),
        ("process_refund", "deny"): (DAYS, tier1, "deny"),
        ("close_account", "other pool"): (
            DAYS, "review by support_tier_2 (2 approvals)", "review by senior_support (2 approvals)",
        ),
    }  # fmt: skip
    assert (report["cards_added"], report["cards_removed"], report["newly_denied"]) == (0, 2 * DAYS, DAYS)
    assert report["approved_now_auto"] == 3  # Ben's three approvals would not have been asked for
    pools = {p["pool"]: (p["cards_before"], p["cards_after"], p["decision_p95_seconds"]) for p in report["pools"]}
    assert pools == {
        "support_tier_1": (3 * DAYS, DAYS, 180.0),  # Ben took 60, 120 and 180 s
        "support_tier_2": (DAYS, 0, None),
        "senior_support": (0, DAYS, None),
    }
