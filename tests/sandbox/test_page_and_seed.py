"""The page's JSON state and actions, the sample panel, seeding from manifests, and `countersign sandbox`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox import AGENT_OWNER, OUTSIDER, EmulatorConfig, SampleRequest, seed_from_policies
from bot.sandbox.server import Emulator
from bot.sandbox.testing import SlackDriver, running_emulator, serve_app, small_seed


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


async def post_json(url: str, body: dict[str, Any]) -> Any:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_static_files(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as session:
        for path, kind in (
            ("/", "text/html"),
            ("/static/app.js", "text/javascript"),
            ("/static/style.css", "text/css"),
        ):
            async with session.get(emulator.url + path) as resp:
                assert resp.status == 200 and resp.content_type == kind
        async with session.get(emulator.url + "/static/../server.py") as resp:
            assert resp.status == 404


async def test_state_shows_ephemerals_only_to_their_user(emulator: Emulator, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="C0REVIEWS", text="card")
    await client.chat_postEphemeral(channel="C0REVIEWS", user="U0BEN", text="just for Ben")
    for user, expected in (("U0BEN", ["card", "just for Ben"]), ("U0ADA", ["card"])):
        state = await get_json(f"{emulator.url}/_emu/state?user={user}")
        reviews = next(c for c in state["channels"] if c["id"] == "C0REVIEWS")
        assert [m["text"] for m in reviews["messages"]] == expected
        assert state["as"] == user


async def test_state_long_poll_returns_on_change(emulator: Emulator, client: AsyncWebClient) -> None:
    version = (await get_json(f"{emulator.url}/_emu/state"))["version"]
    waiting = asyncio.ensure_future(get_json(f"{emulator.url}/_emu/state?since={version}"))
    await asyncio.sleep(0)
    await client.chat_postMessage(channel="C0REVIEWS", text="wake up")
    state = await asyncio.wait_for(waiting, 5)
    assert state["version"] > version


async def test_page_actions_without_a_bot_say_service_not_running(emulator: Emulator, slack: SlackDriver) -> None:
    result = await post_json(
        f"{emulator.url}/_emu/ui/command", {"user": "U0ADA", "channel": "C0REVIEWS", "line": "/hitl help"}
    )
    assert result["ok"] is False and result["error"] == "no_bot" and "service not running" in result["detail"]
    assert slack.ephemerals("U0ADA")[-1].text == '/hitl failed with the error "no_bot"'
    result = await post_json(
        f"{emulator.url}/_emu/ui/message", {"user": "U0ADA", "channel": "C0REVIEWS", "text": "hello"}
    )
    assert result["ok"] and slack.messages("C0REVIEWS")[-1].text == "hello"


async def test_page_click_and_home_reach_bolt(emulator: Emulator, bolt: AsyncApp, client: AsyncWebClient) -> None:
    clicked: list[str] = []

    @bolt.action("approve")
    async def on_approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        clicked.append(body["user"]["id"])

    @bolt.event("app_home_opened")
    async def on_home(event: dict[str, Any], client: AsyncWebClient) -> None:
        await client.views_publish(
            user_id=event["user"],
            view={"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Your queue"}}]},
        )

    posted = await client.chat_postMessage(
        channel="C0REVIEWS",
        text="card",
        blocks=[
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "Approve"}}
                ],
            }
        ],
    )
    body = {"user": "U0CHLOE", "channel": "C0REVIEWS", "message_ts": posted["ts"], "action_id": "approve"}
    result = await post_json(f"{emulator.url}/_emu/ui/click", body)
    assert result["ok"] and result["status"] == 200 and clicked == ["U0CHLOE"]
    assert (await post_json(f"{emulator.url}/_emu/ui/home", {"user": "U0CHLOE"}))["ok"]
    await SlackDriver(emulator).wait_for_home("U0CHLOE", text="Your queue")
    assert (await get_json(f"{emulator.url}/_emu/state?user=U0CHLOE"))["home"]["blocks"][0]["text"][
        "text"
    ] == "Your queue"


async def test_sample_panel_posts_to_the_agent_api() -> None:
    received: list[tuple[str, Any]] = []

    async def agent_api(request: web.Request) -> web.Response:
        received.append((request.headers["Authorization"], await request.json()))
        return web.json_response({"id": "req_1", "status": "pending"}, status=202)

    app = web.Application()
    app.router.add_post("/v1/requests", agent_api)
    seed = small_seed()
    seed.samples = [SampleRequest("acme", "process_refund", {"amount": 620}, {"reason": "late"}, "big refund")]
    async with serve_app(app) as base:
        config = EmulatorConfig(agent_api_url=base, agent_api_keys={"acme": "cs_key"})
        async with running_emulator(config, seed) as emu:
            answer = await post_json(f"{emu.url}/_emu/ui/sample", {"index": 0})
            emu.config.agent_api_url = None
            missing = await post_json(f"{emu.url}/_emu/ui/sample", {"index": 0})
    assert answer == {"ok": True, "status": 202, "answer": {"id": "req_1", "status": "pending"}, "tenant": "acme"}
    assert received == [
        (
            "Bearer cs_key",
            {
                "action": "process_refund",
                "params": {"amount": 620},
                "context": {"summary": "big refund", "reason": "late"},
            },
        )
    ]
    assert missing["ok"] is False and "service not running" in missing["error"]


def test_seed_from_example_manifests(repo_root: Path) -> None:
    import policy

    seed = seed_from_policies(policy.load_dir(repo_root / "manifests"))
    names = {u.id: u for u in seed.users}
    assert names["U0ADA"].is_admin
    channels = {c.id: c for c in seed.channels}
    assert channels["C0SUPPORT1"].name == "support_tier_1"
    assert {"U0ADA", "U0BEN", "U0CHLOE", AGENT_OWNER, OUTSIDER} <= set(channels["C0SUPPORT1"].members)
    assert any(s.tenant == "acme-support" and s.action == "process_refund" for s in seed.samples)


async def test_seed_adapter_with_a_stand_in() -> None:
    pool = SimpleNamespace(channel="#payments-review", members=["U01", "U02"], usergroup="S0PAY")
    manifest = SimpleNamespace(
        tenant="pay",
        admins=["U01"],
        pools={"payments": pool, "later": SimpleNamespace(channel=None, members=[], usergroup=None)},
        tests=[SimpleNamespace(action="pay_out", params={"amount": 1}, context={}, name=None)],
    )
    seed = seed_from_policies(SimpleNamespace(tenants={"pay": SimpleNamespace(manifest=manifest)}))
    async with running_emulator(EmulatorConfig(), seed) as emu:
        ws = emu.workspace
        assert [ws.users[u].name for u in ("U01", "U02", AGENT_OWNER, OUTSIDER)] == [
            "alice",
            "bob",
            "agent-owner",
            "outsider",
        ]
        channel = ws.channel_by_name("payments-review")
        assert channel is not None and channel.id.startswith("C0") and OUTSIDER in channel.members
        assert ws.usergroups["S0PAY"].users == ["U01", "U02"]
        assert ws.channel_by_name("general") is not None
        assert emu.samples[0].action == "pay_out"


@pytest.mark.parametrize("bad", ["U0NOPE"])
async def test_interaction_errors_are_clear(emulator: Emulator, bad: str) -> None:
    from bot.sandbox import InteractionError

    with pytest.raises(InteractionError, match="no user"):
        await emulator.open_home(bad)
