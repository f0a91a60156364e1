"""The page in headless Chromium: the README's sample question, sent from the panel and answered on its card."""

from __future__ import annotations

from typing import Any

import pytest

from bot.sandbox.runner import Sandbox
from tests.sandbox.test_browser import page  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.browser

QUESTION = "a question for support_tier_1"


async def test_the_sample_question_is_answered_in_words_on_its_card(page: Any, sandbox: Sandbox) -> None:  # noqa: F811
    await page.goto(sandbox.page_url)
    sample = page.locator("[data-testid=sample]", has_text=QUESTION)
    await sample.get_by_role("button", name="Send question").click()
    await sample.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
    await sample.locator("[data-testid=open-pool]").click()
    await page.click("[data-testid=act-as-ben]")
    card = page.locator("#view-body > [data-testid=message]", has_text="store credit").last
    for choice in ("Store credit", "Card refund", "Ask her to call us", "Reply…"):
        await card.get_by_role("button", name=choice).wait_for(timeout=5000)
    await card.get_by_role("button", name="Reply…").click()
    modal = page.locator("[data-testid=modal]")
    await modal.locator("textarea").fill("Offer store credit with 10% on top")
    await page.click("[data-testid=modal-submit]")
    await modal.wait_for(state="hidden", timeout=5000)
    await card.locator(".block", has_text="Answered").first.wait_for(timeout=5000)
    assert await card.get_by_role("button", name="Card refund").count() == 0
    await page.click("[data-testid=nav-samples]")
    await sample.locator("[data-testid=sample-status]", has_text="answered").wait_for(timeout=5000)
    answer = await sample.locator("[data-testid=sample-answer-text]").inner_text()
    assert "Offer store credit with 10% on top" in answer and "ben" in answer
