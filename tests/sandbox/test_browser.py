"""The page in headless Chromium: against a stand-in Bolt app (modal errors, slash commands, ephemerals),
and against the whole sandbox (a sample request from the panel, approved on its card by a reviewer).

The screenshot goes to docs/sandbox.png only with COUNTERSIGN_UPDATE_SCREENSHOTS=1, so CI leaves the tree clean.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.runner import Sandbox
from bot.sandbox.server import Emulator
from tests.sandbox.conftest import REASON_MODAL

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Refund $620 to Ana"}},
    {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Requested by* <@U0AGENTOWNER> in <#C0REVIEWS> · due <!date^1700000000^{date_short} {time}|soon>",
        },
        "fields": [{"type": "mrkdwn", "text": "*Amount*\n$620"}, {"type": "mrkdwn", "text": "*Order*\n`A2`"}],
    },
    {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "acme-support · <https://example.com/r/1|req_1> · _0 of 1 approvals_"}],
    },
    {"type": "divider"},
    {
        "type": "actions",
        "block_id": "card_actions",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "style": "primary",
                "value": "r1",
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": "reject",
                "style": "danger",
                "value": "r1",
                "text": {"type": "plain_text", "text": "Reject"},
            },
        ],
    },
]


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="the playwright package is missing: pip install playwright"
    )
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            yield page
        finally:
            await browser.close()


async def test_page_drives_the_bot(
    page: Any, emulator: Emulator, bolt: AsyncApp, client: AsyncWebClient, repo_root: Path
) -> None:
    @bolt.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        done = [
            *CARD[:3],
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f":white_check_mark: Approved by <@{body['user']['id']}>"},
            },
        ]
        await client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], text="Approved", blocks=done)
        await client.chat_postMessage(
            channel=body["channel"]["id"], thread_ts=body["message"]["ts"], text=f"<@{body['user']['id']}> approved"
        )

    @bolt.action("reject")
    async def on_reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=REASON_MODAL)

    @bolt.view("reject_reason")
    async def on_reason(ack: Any, view: dict[str, Any]) -> None:
        if len(view["state"]["values"]["reason"]["text"]["value"]) < 5:
            await ack(response_action="errors", errors={"reason": "Say a little more"})
        else:
            await ack()

    @bolt.command("/hitl")
    async def on_hitl(ack: Any, command: dict[str, Any]) -> None:
        await ack(f"*Pools* for <@{command['user_id']}>: `support_tier_1`")

    await client.chat_postMessage(channel="C0REVIEWS", text="Refund $620 to Ana", blocks=CARD)
    await page.goto(emulator.url + "/#C0REVIEWS")
    await page.get_by_text("Refund $620 to Ana").wait_for()
    await page.select_option("[data-testid=acting-user]", "U0BEN")

    await page.get_by_role("button", name="Reject").click()
    modal = page.locator("[data-testid=modal]")
    await modal.get_by_text("Why reject?").wait_for(timeout=5000)
    await modal.locator("textarea").fill("no")
    await page.click("[data-testid=modal-submit]")
    await page.get_by_text("Say a little more").wait_for(timeout=5000)
    await modal.locator("textarea").fill("duplicate refund")
    await page.click("[data-testid=modal-submit]")
    await modal.wait_for(state="hidden", timeout=5000)

    await page.get_by_role("button", name="Approve").click()
    await page.get_by_text("Approved by @ben").wait_for(timeout=5000)
    await page.get_by_text("@ben approved").wait_for()  # the thread reply

    await page.fill("[data-testid=composer]", "/hitl pools")
    await page.press("[data-testid=composer]", "Enter")
    await page.get_by_text("Only visible to you").wait_for(timeout=5000)
    assert await page.locator(".ephemeral b", has_text="Pools").count() == 1

    await page.select_option("[data-testid=acting-user]", "U0ADA")
    await page.get_by_text("Only visible to you").wait_for(state="detached", timeout=5000)
    await page.select_option("[data-testid=acting-user]", "U0BEN")
    await page.get_by_text("Only visible to you").wait_for()


# Read at import: tests/conftest.py clears COUNTERSIGN_* variables before each test runs.
UPDATE_SCREENSHOTS = os.environ.get("COUNTERSIGN_UPDATE_SCREENSHOTS") == "1"


def screenshot_path(repo_root: Path, tmp_path: Path) -> Path:
    if UPDATE_SCREENSHOTS:
        (repo_root / "docs").mkdir(exist_ok=True)
        return repo_root / "docs" / "sandbox.png"
    return tmp_path / "sandbox.png"


LARGE_REFUND = "large refunds need tier 1, then tier 2, then seniors"
DELETE_DATA = "delete_production_data"


async def test_sample_request_to_approved_card(page: Any, sandbox: Sandbox, repo_root: Path, tmp_path: Path) -> None:
    await page.goto(sandbox.page_url)
    # A first visit lands on the agent requests, acting as a reviewer of the first pool.
    refund = page.locator("[data-testid=sample]", has_text=LARGE_REFUND)
    await refund.wait_for()
    assert await page.locator("[data-testid=acting-user]").input_value() == "U0ADA"

    await refund.get_by_role("button", name="Send request").click()
    await refund.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
    await refund.locator("[data-testid=open-pool]").click()
    await page.locator("#view-title", has_text="support_tier_1").wait_for()
    assert await page.locator("[data-testid=people] .chip.reviewer").all_inner_texts() == [
        "ada (admin)",
        "ben",
        "chloe",
    ]

    card = page.locator("#view-body > [data-testid=message]", has_text="Refund €620 to Ana").first
    await card.get_by_role("button", name="Approve").click()
    await card.locator(".block", has_text="Approved").first.wait_for(timeout=5000)
    assert await card.get_by_role("button", name="Approve").count() == 0
    await card.locator(".thread [data-testid=message]", has_text="Approved by").wait_for(timeout=5000)
    await page.screenshot(path=str(screenshot_path(repo_root, tmp_path)))

    # Reject as someone else on a second request: the reason modal, then the decided card.
    await page.click("[data-testid=nav-samples]")
    await refund.locator("[data-testid=sample-status]", has_text="approved").wait_for(timeout=5000)
    await refund.get_by_role("button", name="Send request").click()
    await refund.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
    await refund.locator("[data-testid=open-pool]").click()
    await page.click("[data-testid=act-as-ben]")
    pending = page.locator("#view-body > [data-testid=message]", has_text="Refund €620 to Ana").last
    await pending.get_by_role("button", name="Reject").click()
    modal = page.locator("[data-testid=modal]")
    await modal.locator("textarea").fill("Already refunded by hand in the billing console")
    await page.click("[data-testid=modal-submit]")
    await modal.wait_for(state="hidden", timeout=5000)
    await pending.locator(".block", has_text="Rejected").first.wait_for(timeout=5000)
    await page.click("[data-testid=nav-samples]")
    await refund.locator("[data-testid=sample-status]", has_text="rejected").wait_for(timeout=5000)
