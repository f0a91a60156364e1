"""The sandbox page shows what the service tells a requester: the DM sent when their request is decided."""

from __future__ import annotations

from typing import Any

from bot.sandbox.runner import Sandbox
from bot.sandbox.seed import AGENT_OWNER
from tests.sandbox.test_browser import LARGE_REFUND, page

__all__ = ["page"]  # the Chromium fixture, shared with test_browser.py


async def test_the_requester_reads_the_decision_in_their_direct_messages(page: Any, sandbox: Sandbox) -> None:
    await page.goto(sandbox.page_url)
    refund = page.locator("[data-testid=sample]", has_text=LARGE_REFUND)
    await refund.get_by_role("button", name="Send request").click()
    await refund.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
    await refund.locator("[data-testid=open-pool]").click()
    card = page.locator("#view-body > [data-testid=message]", has_text="Refund €620 to Ana").first
    await card.get_by_role("button", name="Approve", exact=True).click()
    await card.locator(".block", has_text="Approved").first.wait_for(timeout=5000)

    # The samples act on behalf of agent-owner: acting as them, the DM is in the sidebar.
    await page.select_option("[data-testid=acting-user]", AGENT_OWNER)
    await page.locator("[data-testid=dm-countersign]").click()
    dm = page.locator("#view-body [data-testid=message]", has_text="made on your behalf")
    await dm.wait_for(timeout=5000)
    text = await dm.inner_text()
    assert "Approved" in text and "by @ada" in text, text
