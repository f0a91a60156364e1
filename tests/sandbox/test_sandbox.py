"""`countersign sandbox`: the emulator and the real service in one process, wired together."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.ids import ActionId, CallbackId
from bot.sandbox import runner
from bot.sandbox.runner import (
    DATABASE_FILE,
    KEYS_FILE,
    Sandbox,
    SandboxOptions,
    credentials,
    load_seed,
    running_sandbox,
)
from bot.sandbox.testing import SlackDriver, message_text
from bot.service.cardrepair import repost_lost_cards

LARGE_REFUND = "large refunds need tier 1, then tier 2, then seniors"
TIER1 = "C0SUPPORT1"
TIER2 = "C0SUPPORT2"
BEN = "U0BEN"


async def call(method: str, url: str, body: Any = None, *, key: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session, session.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def page_action(sandbox: Sandbox, action: str, body: dict[str, Any]) -> Any:
    status, answer = await call("POST", f"{sandbox.emulator.url}/_emu/ui/{action}", body)
    assert status == 200
    return answer


def sample_index(sandbox: Sandbox, name: str) -> int:
    return next(i for i, s in enumerate(sandbox.emulator.samples) if s.name == name)


async def test_a_sample_from_the_page_becomes_a_card_the_default_user_can_approve(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    _, state = await call("GET", f"{sandbox.emulator.url}/_emu/state")
    me = state["default_user"]
    pool = next(p for p in state["pools"] if (p["tenant"], p["name"]) == ("acme-support", "support_tier_1"))
    assert pool["channel"] == TIER1 and me in pool["members"]
    assert state["agent_api_url"] == sandbox.agent_api_url
    assert (
        next(c for c in state["channels"] if c["id"] == TIER1)["topic"] == "Reviewer pool acme-support/support_tier_1"
    )

    sent = await page_action(sandbox, "sample", {"index": sample_index(sandbox, LARGE_REFUND)})
    assert (sent["ok"], sent["status"], sent["answer"]["status"]) == (True, 202, "pending")
    card = await slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    assert "Refund €620 to Ana" in repr(card.blocks)

    clicked = await page_action(
        sandbox, "click", {"user": me, "channel": TIER1, "message_ts": card.ts, "action_id": ActionId.APPROVE}
    )
    assert clicked["ok"], clicked
    decided = await slack.wait_for_message(TIER1, predicate=lambda m: "Approved" in repr(m.blocks))
    assert ActionId.APPROVE not in repr(decided.blocks)
    now = await page_action(sandbox, "request", {"tenant": "acme-support", "id": sent["answer"]["id"]})
    assert (now["answer"]["status"], now["answer"]["decision"]["by"]) == ("approved", me)


async def test_reject_opens_the_reason_modal_and_decides(sandbox: Sandbox) -> None:
    slack = SlackDriver(sandbox.emulator, timeout=10)
    sent = await page_action(sandbox, "sample", {"index": sample_index(sandbox, LARGE_REFUND)})
    card = await slack.wait_for_message(TIER1, action_id=ActionId.REJECT)
    await page_action(
        sandbox, "click", {"user": BEN, "channel": TIER1, "message_ts": card.ts, "action_id": ActionId.REJECT}
    )
    modal = await slack.wait_for_modal(BEN, callback_id=CallbackId.REJECT_REASON)
    submitted = await page_action(
        sandbox, "submit", {"user": BEN, "view_id": modal.id, "inputs": {"countersign.reason/reason": "duplicate"}}
    )
    assert submitted["ok"], submitted
    await slack.wait_for_message(TIER1, predicate=lambda m: "Rejected" in repr(m.blocks))
    status, body = await call(
        "GET", f"{sandbox.agent_api_url}/v1/requests/{sent['answer']['id']}", key=sandbox.keys["acme-support"]
    )
    assert (status, body["status"], body["decision"]["reason"]) == (200, "rejected", "duplicate")


async def test_acting_as_the_agent_owner_shows_the_self_approval_refusal(sandbox: Sandbox) -> None:
    """The samples act on the agent owner's behalf, as the README's walk-through says: their click is refused
    for that reason, an outsider's for not being in the pool, and the card names whom the agent acts for."""
    slack = SlackDriver(sandbox.emulator, timeout=10)
    await page_action(sandbox, "sample", {"index": sample_index(sandbox, LARGE_REFUND)})
    card = await slack.wait_for_message(TIER1, action_id=ActionId.APPROVE)
    assert "<@U0AGENTOWNER>" in repr(card.blocks)
    for user, refusal in (("U0AGENTOWNER", "acts on your behalf"), ("U0OUTSIDER", "not in a reviewer pool")):
        clicked = await page_action(
            sandbox, "click", {"user": user, "channel": TIER1, "message_ts": card.ts, "action_id": ActionId.APPROVE}
        )
        assert clicked["ok"], clicked
        told = await slack.wait_for_ephemeral(user, channel=TIER1)
        assert refusal in message_text(told), message_text(told)


async def test_keys_are_created_once_reused_and_renewed_when_the_database_is_gone(
    repo_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    options = SandboxOptions(port=0, data_dir=data, manifests=repo_root / "manifests")
    seed = load_seed(options.manifests)
    creds = credentials(data)

    async def start_and_check() -> dict[str, str]:
        async with running_sandbox(seed, creds, options) as sandbox:
            for tenant, key in sandbox.keys.items():
                status, body = await call("GET", f"{sandbox.agent_api_url}/v1/requests/nope", key=key)
                assert status == 404, (tenant, body)  # authenticated, then not found
            return sandbox.keys

    first = await start_and_check()
    keys_file = data / KEYS_FILE
    assert set(first) == {"acme-support", "platform"}
    assert json.loads(keys_file.read_text()) == first
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert (data / ".gitignore").read_text() == "*\n"

    assert await start_and_check() == first

    for path in data.glob(DATABASE_FILE + "*"):
        path.unlink()
    renewed = await start_and_check()
    assert set(renewed) == set(first) and not set(renewed.values()) & set(first.values())
    assert json.loads(keys_file.read_text()) == renewed


async def test_invalid_manifests_are_refused(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "bad.yaml").write_text("tenant: bad\nactions:\n  refund: {timeout: soonish}\n")
    errors = []
    for where in (manifests, tmp_path / "nowhere"):
        # A subprocess with a timeout: were the sandbox to start anyway, the test fails instead of hanging.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "sandbox", "--port", "0", "--manifests", str(where),
            "--data-dir", str(tmp_path / "d"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1, out.decode()
        errors.append(err.decode())
    assert errors[0].startswith("countersign sandbox: the manifests") and "cannot read duration 'soonish'" in errors[0]
    assert errors[1].startswith("countersign sandbox: no manifests directory")


async def test_cli_prints_the_urls_serves_an_agent_and_stops_on_sigterm(repo_root: Path, tmp_path: Path) -> None:
    """Run outside a clone (no ./manifests): the example manifests shipped in the package serve."""
    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "sandbox", "--port", "0", "--data-dir", str(data), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Press Ctrl-C"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, f"the sandbox exited early: {lines}"
            lines.append(line.strip())
        page = lines[0].split("open ", 1)[1]
        api = next(x for x in lines if x.startswith("agent API (COUNTERSIGN_URL):")).split(": ", 1)[1]
        keys = json.loads((data / KEYS_FILE).read_text())

        body = {"action": "process_refund", "params": {"amount": 900, "order_id": "B7"}}
        status, answer = await call("POST", api + "/v1/requests", body, key=keys["acme-support"])
        assert (status, answer["status"], answer["pool"]) == (202, "pending", "support_tier_1")

        async def card_shown() -> None:
            version = -1
            while True:
                _, state = await call("GET", f"{page}_emu/state?user=U0ADA&since={version}")
                channel = next(c for c in state["channels"] if c["id"] == TIER1)
                if any(answer["id"] in json.dumps(m["blocks"]) for m in channel["messages"]):
                    return
                version = state["version"]

        await asyncio.wait_for(card_shown(), 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip().endswith("stopped")
    assert "using the example manifests shipped with countersign" in err.decode()


async def test_a_request_pending_across_a_restart_gets_its_card_again(repo_root: Path, tmp_path: Path) -> None:
    """The emulated workspace starts empty each time; the database remembers the request and its card."""
    options = SandboxOptions(port=0, data_dir=tmp_path / "data", manifests=repo_root / "manifests")
    seed, creds = load_seed(options.manifests), credentials(options.data_dir)
    refund = {"action": "process_refund", "params": {"amount": 900, "currency": "EUR", "order_id": "R-1"}}
    async with running_sandbox(seed, creds, options) as sandbox:
        status, body = await call(
            "POST", f"{sandbox.agent_api_url}/v1/requests", refund, key=sandbox.keys["acme-support"]
        )
        assert status == 202
        await SlackDriver(sandbox.emulator).wait_for_message(TIER1, text=body["id"])
    async with running_sandbox(seed, creds, options) as sandbox:
        slack = SlackDriver(sandbox.emulator)
        card = await slack.wait_for_message(TIER1, text=body["id"])
        await slack.click("U0BEN", channel=TIER1, action_id=ActionId.APPROVE, message_ts=card.ts)
        await slack.wait_for_message(TIER1, predicate=lambda m: m.ts == card.ts and "Approved" in repr(m.blocks))
        assert len(slack.messages(TIER1)) == 1  # the card, updated in place; no orphan notes beside it


class Later:
    """Real time, plus the jumps a test makes: deadlines pass at once, while the outbox's one post a second
    per channel still flows (its retries are due on this clock, its turns come in real time)."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


@pytest.mark.parametrize("down", [False, True], ids=["deadline-after-the-restart", "deadline-while-stopped"])
async def test_an_escalation_after_a_restart_is_noted_in_the_reposted_cards_thread(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, down: bool
) -> None:
    """The note saying a request moved on belongs under its card; after a restart that is the card posted again,
    never a top-level line of its own (the card it would have answered is gone with the old workspace)."""
    clock = Later()
    options = SandboxOptions(port=0, data_dir=tmp_path / "data", manifests=repo_root / "manifests")
    seed, creds = load_seed(options.manifests), credentials(options.data_dir)
    refund = {"action": "process_refund", "params": {"amount": 900, "currency": "EUR", "order_id": "R-2"}}
    async with running_sandbox(seed, creds, options, clock=clock) as sandbox:
        status, body = await call(
            "POST", f"{sandbox.agent_api_url}/v1/requests", refund, key=sandbox.keys["acme-support"]
        )
        assert status == 202 and body["pool"] == "support_tier_1"
        await SlackDriver(sandbox.emulator).wait_for_message(TIER1, text=body["id"])
    if down:
        clock.advance(6 * 60)  # tier 1's 5 minutes run out while the sandbox is stopped: fired at the start

        async def slow_repost(*args: Any) -> int:
            await asyncio.sleep(0.5)  # a workspace slow to tell which cards it has: nothing acts on the lost ones
            return await repost_lost_cards(*args)

        monkeypatch.setattr(runner, "repost_lost_cards", slow_repost)
    async with running_sandbox(seed, creds, options, clock=clock) as sandbox:
        assert sandbox.runtime is not None
        slack = SlackDriver(sandbox.emulator, timeout=10)
        if not down:
            await slack.wait_for_message(TIER1, text=body["id"], action_id=ActionId.APPROVE)  # posted again
            clock.advance(6 * 60)  # tier 1's 5 minutes are up
            fired = await sandbox.runtime.keeper.run_due()
            assert [(f.action, f.detail) for f in fired] == [("escalated", "support_tier_2")]
        await slack.wait_for_message(TIER2, text=body["id"], action_id=ActionId.APPROVE)
        card = await slack.wait_for_message(
            TIER1, predicate=lambda m: body["id"] in message_text(m) and "Escalated to <#C0SUPPORT2>" in repr(m.blocks)
        )

        def orphans() -> list[str]:
            return [m.text for m in slack.messages(TIER1) if m.ts != card.ts]

        assert orphans() == []  # the reminder that went first is not one either
        note = await slack.wait_for_message(TIER1, predicate=lambda m: "escalated to `support_tier_2`" in m.text)
        assert note.thread_ts == card.ts != note.ts
        assert note.ts in [m.ts for m in slack.thread(TIER1, card.ts)]
        assert orphans() == []
