"""The emulator's page in headless Chromium: switch user, click a card's button, run a slash command."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.server import Emulator

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
REASON_MODAL = {
    "type": "modal",
    "callback_id": "reject_reason",
    "title": {"type": "plain_text", "text": "Reject request"},
    "submit": {"type": "plain_text", "text": "Reject"},
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Why reject?"},
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
        }
    ],
}


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
    (repo_root / "docs").mkdir(exist_ok=True)
    await page.screenshot(path=str(repo_root / "docs" / "sandbox.png"))
