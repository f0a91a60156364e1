"""The page in headless Chromium: against a stand-in Bolt app (modal errors, slash commands, ephemerals),
and against the whole sandbox (a sample request from the panel, approved on its card by a reviewer).

The screenshot goes to docs/sandbox.png only with COUNTERSIGN_UPDATE_SCREENSHOTS=1, so CI leaves the tree clean.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import SampleRequest
from bot.sandbox.runner import Sandbox, SandboxOptions, credentials, load_seed, running_sandbox
from bot.sandbox.server import Emulator
from tests.sandbox.conftest import REASON_MODAL

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CARD: list[dict[str, Any]] = [
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

    await page.get_by_role("button", name="Approve", exact=True).click()
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
    await assert_pending_card(card, ["ada", "ben", "chloe"])
    await card.get_by_role("button", name="Approve", exact=True).click()
    await card.locator(".block", has_text="Approved").first.wait_for(timeout=5000)
    assert await card.get_by_role("button", name="Approve", exact=True).count() == 0
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

    # The README's pool command, typed as written (a typed @name, as Slack escapes it), by the admin.
    await page.click("[data-testid=channel-support_tier_1]")
    await page.click("[data-testid=act-as-ada]")
    await page.fill("[data-testid=composer]", "/hitl pool add support_tier_1 @erin")
    await page.press("[data-testid=composer]", "Enter")
    answer = page.locator(".ephemeral", has_text="support_tier_1").last
    await answer.wait_for(timeout=5000)
    text = await answer.inner_text()
    assert "Added @erin to support_tier_1" in text and "is not a person" not in text, text


async def assert_pending_card(card: Any, approvers: list[str]) -> None:
    """A pending card as a reviewer sees it: its risk badge, a relative deadline, who can approve, its buttons."""
    context = await card.locator(".context").first.inner_text()
    assert "🟠 high risk" in context, context
    assert re.search(r"Deadline in \d+ minutes?, ", context), context
    assert "Can approve: " + " ".join(f"@{name}" for name in approvers) in context, context
    for name in ("Approve", "Reject", "Details"):
        assert await card.get_by_role("button", name=name, exact=True).count() == 1


# Colon words in the bot's sources that are not emoji: Sphinx roles are followed by a backtick.
NOT_EMOJI = {"memory", "again"}


def shortcodes_the_bot_writes(repo_root: Path) -> set[str]:
    """Every `:name:` in the service's and the policies' sources (the emulator's own excluded)."""
    found: set[str] = set()
    for folder in ("bot", "policy", "store"):
        for path in (repo_root / folder).rglob("*.py"):
            if "sandbox" in path.parts:
                continue
            found |= set(re.findall(r"(?<![\w:}]):([a-z][a-z0-9_+-]*):(?![`\w{])", path.read_text()))
    return found - NOT_EMOJI


async def test_emoji_shortcodes_show_as_emoji(
    page: Any, emulator: Emulator, client: AsyncWebClient, repo_root: Path
) -> None:
    codes = sorted(shortcodes_the_bot_writes(repo_root))
    assert {"large_orange_circle", "thinking_face", "white_check_mark", "hourglass_flowing_sand"} <= set(codes)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": ":hourglass_flowing_sand: Waiting", "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "codes: " + " ".join(f":{c}:" for c in codes)}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": ":large_orange_circle: *high* risk :no_such_one:"}],
        },
        {"type": "section", "text": {"type": "plain_text", "text": "as typed :x:", "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "in code `:x:` and at 09:30:15"}},
    ]
    await client.chat_postMessage(channel="C0REVIEWS", text="emoji", blocks=blocks)
    await client.chat_postMessage(channel="C0REVIEWS", text=":thinking_face: plain text, no blocks")
    await page.goto(emulator.url + "/#C0REVIEWS")
    card = page.locator("[data-testid=message]", has_text="Waiting")
    await card.wait_for()

    assert await card.locator(".block-header").inner_text() == "⏳ Waiting"
    listed = await card.locator(".block", has_text="codes:").inner_text()
    left = [c for c in codes if f":{c}:" in listed]
    assert not left, f"shortcodes the bot writes that the page shows as text: {left}"
    shown = await card.inner_text()
    assert "🟠 high risk :no_such_one:" in shown  # an unknown code stays as written
    assert "as typed :x:" in shown and "in code :x: and at 09:30:15" in shown
    assert "🤔 plain text, no blocks" in await page.locator("[data-testid=view-body]").inner_text()


def many_samples(count: int) -> list[SampleRequest]:
    return [SampleRequest("acme", "process_refund", {"amount": 100 + i}, {}, f"sample {i}") for i in range(count)]


async def scroll(page: Any) -> dict[str, int]:
    return dict(
        await page.evaluate(
            "() => { const b = document.querySelector('#view-body');"
            " return { top: b.scrollTop, height: b.scrollHeight, client: b.clientHeight }; }"
        )
    )


async def test_views_open_at_their_top_and_channels_at_their_latest_message(
    page: Any, emulator: Emulator, client: AsyncWebClient
) -> None:
    emulator.core.samples = many_samples(20)
    emulator.config.agent_api_url = "http://127.0.0.1:9"  # the page then opens on the agent requests
    for i in range(40):
        await client.chat_postMessage(channel="C0REVIEWS", text=f"message {i}")

    await page.goto(emulator.url + "/")
    await page.locator("[data-testid=sample]", has_text="sample 19").wait_for()
    opened = await scroll(page)
    assert opened["height"] > opened["client"] and opened["top"] == 0

    await page.click("[data-testid=channel-reviews]")
    await page.get_by_text("message 39").wait_for()
    channel = await scroll(page)
    assert channel["top"] > 0 and channel["top"] + channel["client"] >= channel["height"] - 2
    await client.chat_postMessage(channel="C0REVIEWS", text="message 40")  # read to the end: it follows
    await page.get_by_text("message 40").wait_for()
    assert await page.get_by_text("message 40").is_visible()

    await page.click("[data-testid=nav-samples]")
    await page.locator("[data-testid=sample]", has_text="sample 0").wait_for()
    assert (await scroll(page))["top"] == 0


async def test_sample_answers_and_ephemerals_survive_a_reload(page: Any, sandbox: Sandbox) -> None:
    await page.goto(sandbox.page_url)
    refund = page.locator("[data-testid=sample]", has_text=LARGE_REFUND)
    small = page.locator("[data-testid=sample]", has_text="small refunds go through")
    await refund.get_by_role("button", name="Send request").click()
    await refund.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
    await small.get_by_role("button", name="Send request").click()
    await small.locator("[data-testid=sample-status]", has_text="auto approved").wait_for(timeout=5000)

    await page.reload()
    await refund.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
    await small.locator("[data-testid=sample-status]", has_text="auto approved").wait_for()
    assert await page.locator("[data-testid=sample-answer]").count() == 2

    await refund.locator("[data-testid=open-pool]").click()
    card = page.locator("#view-body > [data-testid=message]", has_text="Refund €620 to Ana").first
    await card.get_by_role("button", name="Approve", exact=True).click()
    await card.locator(".block", has_text="Approved").first.wait_for(timeout=5000)
    await page.fill("[data-testid=composer]", "/hitl help")
    await page.press("[data-testid=composer]", "Enter")
    await page.locator(".ephemeral").first.wait_for(timeout=5000)

    await page.reload()
    await page.locator(".ephemeral").first.wait_for(timeout=5000)
    await page.click("[data-testid=nav-samples]")
    await refund.locator("[data-testid=sample-status]", has_text="approved").wait_for(timeout=5000)
    assert "by ada" in await refund.locator("[data-testid=sample-answer]").inner_text()


async def test_escape_closes_a_modal_and_a_reload_leaves_none(
    page: Any, emulator: Emulator, bolt: AsyncApp, client: AsyncWebClient
) -> None:
    closed: list[str] = []

    @bolt.action("reject")
    async def on_reject(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view={**REASON_MODAL, "notify_on_close": True})

    @bolt.view_closed("reject_reason")
    async def on_closed(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        closed.append(body["user"]["id"])

    await client.chat_postMessage(channel="C0REVIEWS", text="Refund $620 to Ana", blocks=CARD)
    await page.goto(emulator.url + "/#C0REVIEWS")
    await page.get_by_text("Refund $620 to Ana").wait_for()
    await page.select_option("[data-testid=acting-user]", "U0BEN")
    modal = page.locator("[data-testid=modal]")

    await page.get_by_role("button", name="Reject").click()
    await modal.get_by_text("Why reject?").wait_for(timeout=5000)
    await page.keyboard.press("Escape")
    await modal.wait_for(state="hidden", timeout=5000)
    assert emulator.workspace.top_modal("U0BEN") is None and closed == ["U0BEN"]  # notify_on_close: told

    await page.get_by_role("button", name="Reject").click()
    await modal.get_by_text("Why reject?").wait_for(timeout=5000)
    await page.reload()
    await page.get_by_text("Refund $620 to Ana").wait_for()
    for _ in range(50):
        if emulator.workspace.top_modal("U0BEN") is None:
            break
        await asyncio.sleep(0.1)
    assert emulator.workspace.top_modal("U0BEN") is None and closed == ["U0BEN", "U0BEN"]
    assert not await modal.is_visible()


NOT_ANSWERING = "The sandbox is not answering: is countersign sandbox still running?"


async def test_a_stopped_sandbox_is_said_so(page: Any, emulator: Emulator) -> None:
    emulator.core.samples = many_samples(1)
    emulator.config.agent_api_url = "http://127.0.0.1:9"
    await page.goto(emulator.url + "/")
    sample = page.locator("[data-testid=sample]", has_text="sample 0")
    await sample.wait_for()
    await emulator.stop()

    await page.locator("[data-testid=offline]", has_text=NOT_ANSWERING).wait_for(timeout=5000)
    await sample.get_by_role("button", name="Send request").click()
    await sample.locator("[data-testid=sample-answer]", has_text=NOT_ANSWERING).wait_for(timeout=5000)
    assert await sample.get_by_role("button", name="Send request").is_enabled()  # to try again
    await page.locator("#toast", has_text=NOT_ANSWERING).wait_for()

    await page.click("[data-testid=channel-reviews]")
    await page.evaluate("() => { document.querySelector('#toast').hidden = true; }")
    await page.fill("[data-testid=composer]", "/hitl pools")
    await page.press("[data-testid=composer]", "Enter")
    await page.locator("#toast", has_text=NOT_ANSWERING).wait_for(timeout=5000)
    assert await page.input_value("[data-testid=composer]") == "/hitl pools"  # kept, to send again


async def test_a_pending_card_is_back_after_a_restart(page: Any, repo_root: Path, tmp_path: Path) -> None:
    """Stop the sandbox with a request pending, start it again on the same data: the card is posted again."""
    options = SandboxOptions(port=0, data_dir=tmp_path / "data", manifests=repo_root / "manifests", rate_limiting=False)
    seed = load_seed(options.manifests)
    refund = page.locator("[data-testid=sample]", has_text=LARGE_REFUND)
    async with running_sandbox(seed, credentials(options.data_dir), options) as first:
        await page.goto(first.page_url)
        await refund.get_by_role("button", name="Send request").click()
        await refund.locator("[data-testid=sample-status]", has_text="pending").wait_for(timeout=5000)
        request_id = await refund.locator("[data-testid=sample-answer] code").first.inner_text()
        options.port = int(first.page_url.rstrip("/").rsplit(":", 1)[1])  # the same page URL after the restart
    await page.locator("[data-testid=offline]").wait_for(timeout=5000)

    async with running_sandbox(seed, credentials(options.data_dir), options) as second:
        assert second.page_url == page.url.split("#")[0]
        await page.reload()
        await page.click("[data-testid=channel-support_tier_1]")
        card = page.locator("#view-body > [data-testid=message]", has_text=request_id)
        await card.wait_for(timeout=10000)
        assert await page.locator("[data-testid=offline]").is_hidden()
        assert "Approval needed: Refund €620 to Ana" in await card.inner_text()
        await assert_pending_card(card, ["ada", "ben", "chloe"])
        await card.get_by_role("button", name="Approve", exact=True).click()
        await card.locator(".block", has_text="Approved").first.wait_for(timeout=5000)
        assert await card.get_by_role("button", name="Approve", exact=True).count() == 0
