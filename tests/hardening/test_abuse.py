"""Abuse: a curious tenant, a hostile agent, secrets that must never reach Slack, logs, metrics or exports.

Also covered elsewhere: bodies over 256 KiB (413) and params nested too deep (422) in
tests/e2e/test_agent_api.py; a reviewer of another tenant voting (tests/e2e/test_agent_api.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot.ids import ActionId
from bot.sandbox.testing import message_text, serve_app
from bot.service.effects import Effect
from store.audit import export
from tests.e2e.conftest import CROWD, CROWD_MEMBERS, FAST_RETRY, Stack, eventually
from tests.hardening.conftest import SWARM, SWARM_MEMBERS

# -- a curious tenant -----------------------------------------------------------------------------------------


async def test_another_tenants_request_is_404_on_every_endpoint_and_untouched(stack: Stack) -> None:
    _, theirs = await stack.agent("lab").ask("crowd_vote", {"n": 1})
    lab_id = theirs["id"]
    nobody = "0" * 32
    swarm = stack.agent("swarm")
    for method, path, wait in (
        ("GET", "/v1/requests/{}", 0),
        ("GET", "/v1/requests/{}", 1),  # a long poll on someone else's id
        ("POST", "/v1/requests/{}/cancel", 0),
    ):
        status, body = await swarm.call(method, path.format(lab_id), wait=wait)
        _, unknown = await swarm.call(method, path.format(nobody), wait=wait)
        assert status == 404 and body["error"]["code"] == "not_found", body
        # The same answer as for an id that exists nowhere: nothing tells the two apart.
        assert body["error"]["message"].replace(lab_id, "X") == unknown["error"]["message"].replace(nobody, "X")
    _, still = await stack.agent("lab").call("GET", f"/v1/requests/{lab_id}")
    assert still["status"] == "pending"  # the other tenant's cancel did nothing


async def test_slash_commands_never_show_another_tenants_requests_or_pools(stack: Stack) -> None:
    _, theirs = await stack.agent("lab").ask("crowd_vote", {"secret_project": "apollo"})
    await stack.slack.wait_for_message(CROWD, action_id=ActionId.APPROVE)
    member = SWARM_MEMBERS[0]  # in swarm only
    await stack.slack.command(member, f"/hitl show {theirs['id']}")
    shown = await stack.slack.wait_for_ephemeral(member, text=theirs["id"])
    assert "has no request" in message_text(shown) and "apollo" not in message_text(shown)
    await stack.slack.command(member, "/hitl lab pools")
    refused = await stack.slack.wait_for_ephemeral(member, text="not part of a tenant named `lab`")
    await stack.slack.command(member, "/hitl no-such-tenant pools")
    unknown = await stack.slack.wait_for_ephemeral(member, text="`no-such-tenant`")
    # A tenant that exists and one that does not get the same words.
    assert message_text(refused).replace("`lab`", "X") == message_text(unknown).replace("`no-such-tenant`", "X")
    await stack.slack.command(member, "/hitl lab show " + theirs["id"])
    await stack.slack.wait_until(lambda: len(stack.slack.ephemerals(member)) == 4, what="the fourth answer")
    await stack.slack.command(member, "/hitl pending")
    pending = await stack.slack.wait_until(lambda: len(stack.slack.ephemerals(member)) == 5 or None, what="pending")
    assert pending
    everything = "\n".join(message_text(e) for e in stack.slack.ephemerals(member))
    assert "apollo" not in everything and "crowd" not in everything.replace("not part", "")
    # And a lab reviewer's /hitl answers for lab, which does have it.
    await stack.slack.command(CROWD_MEMBERS[0], f"/hitl show {theirs['id']}")
    own = await stack.slack.wait_for_ephemeral(CROWD_MEMBERS[0], text=theirs["id"])
    assert "has no request" not in message_text(own) and "crowd_vote" in message_text(own)


# -- a hostile agent: where callbacks may go ------------------------------------------------------------------

REFUSED_CALLBACKS = [
    "http://10.0.0.1/cb",  # a private address the tenant did not list
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://localhost/cb",
    "http://[::1]/cb",
    "http://127.0.0.2/cb",
    "http://0.0.0.0/cb",
    "http://2130706433/cb",  # 127.0.0.1 spelled as one number
    "http://127.1/cb",
    "http://user:pass@127.0.0.1/cb",
    "http://user@agents.swarm.example/cb",
    "http://agents.swarm.example@evil.example/cb",
    "http://agents.swarm.example.evil.example/cb",
    "http://evil.example/#@agents.swarm.example",
    "ftp://127.0.0.1/cb",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
    "javascript:alert(1)",
    "http:///cb",
]
ACCEPTED_CALLBACKS = ["http://127.0.0.1:9/cb", "https://agents.swarm.example/cb", "https://AGENTS.Swarm.example./x"]


async def test_callback_urls_outside_the_allowed_hosts_are_refused(stack: Stack) -> None:
    for url in REFUSED_CALLBACKS:
        status, body = await stack.agent("swarm").ask("async_change", {}, callback_url=url)
        assert status == 422, (url, status, body)
        assert body["error"]["field"] == "callback_url", (url, body)
    assert stack.slack.messages(SWARM) == []  # nothing was created for any of them
    for url in ACCEPTED_CALLBACKS:
        status, body = await stack.agent("swarm").ask("async_change", {}, callback_url=url)
        assert status == 202, (url, body)


@dataclass
class Server:
    """A local HTTP server that records the paths asked for; answers 200, or redirects to ``location`` if set."""

    url: str = ""
    hits: list[str] = field(default_factory=list)
    location: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        if self.location:
            raise web.HTTPFound(self.location)
        return web.json_response({"ok": True})


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    async with serve_app(app) as url:
        server.url = url
        yield server


async def test_a_redirect_from_an_allowed_host_is_not_followed(stack: Stack) -> None:
    stack.runtime.worker.retry_for[Effect.CALLBACK] = FAST_RETRY
    async with serving(Server()) as elsewhere, serving(Server()) as agent:
        agent.location = elsewhere.url + "/stolen"
        status, body = await stack.agent("swarm").ask("async_change", {}, callback_url=agent.url + "/cb")
        assert status == 202
        await stack.slack.click(SWARM_MEMBERS[0], channel=SWARM, action_id=ActionId.APPROVE)
        await eventually(_at_least(agent.hits, 3), what="three attempts at the allowed host")
    assert elsewhere.hits == []  # the redirect was never followed
    assert not [r for r in await stack.audit("swarm", body["id"]) if r.kind == "callback.delivered"]


def _at_least(hits: list[str], n: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(hits) >= n

    return probe


async def test_a_chunked_body_over_256_kib_is_413(stack: Stack) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"action": "one_vote", "params": {"blob": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}}'

    headers = {"Authorization": f"Bearer {stack.keys['swarm']}", "Content-Type": "application/json"}
    async with stack.http.post(stack.url + "/v1/requests", data=chunks(), headers=headers) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    "params",
    [
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": 1}}}}}}}}}}}}}},
        {"wide": list(range(6000))},
    ],
    ids=["deep", "wide"],
)
async def test_params_too_deep_or_too_wide_are_422(stack: Stack, params: dict[str, object]) -> None:
    status, body = await stack.agent("swarm").ask("one_vote", params)
    assert (status, body["error"]["field"]) == (422, "params"), body


# -- secrets never leave the agent's own reads ------------------------------------------------------------

CARD = "4111111111111111"
EMAIL = "ana.secret@example.org"
DB_DRIVERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine")  # print SQL parameters at DEBUG: see SECURITY.md


async def test_sensitive_params_never_reach_slack_logs_metrics_or_the_audit_export(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    params = {"amount": 620, "card_number": CARD, "customer": {"name": "Ana", "email": EMAIL}}
    reviewer, other = SWARM_MEMBERS[0], SWARM_MEMBERS[1]
    with caplog.at_level(logging.DEBUG):
        status, body = await stack.agent("swarm").ask("pay_card", params)
        assert status == 202
        card = await stack.slack.wait_for_message(SWARM, action_id=ActionId.APPROVE)
        assert "Ana" in message_text(card)  # the card is there, with what is not secret
        await stack.slack.click(other, channel=SWARM, action_id=ActionId.DETAILS)
        await stack.slack.wait_for_modal(other)
        await stack.slack.open_home(reviewer)
        await stack.slack.wait_for_home(reviewer, text="Ana")
        await stack.slack.command(reviewer, f"/hitl show {body['id']}")
        await stack.slack.wait_for_ephemeral(reviewer, text=body["id"])
        await stack.slack.command(reviewer, "/hitl pending")
        await stack.slack.wait_until(lambda: len(stack.slack.ephemerals(reviewer)) == 2, what="pending")
        await stack.slack.click(reviewer, channel=SWARM, action_id=ActionId.APPROVE)
        _, done = await stack.agent("swarm").call("GET", f"/v1/requests/{body['id']}", wait=5)
        assert done["status"] == "approved"
        await stack.slack.wait_for_message(SWARM, predicate=lambda m: "Approved" in message_text(m))
        async with stack.http.get(stack.url + "/metrics") as resp:
            metrics = await resp.text()
    # The agent's own reads are the one place they are: stored for it (the card shows a digest or a mask).
    # Slack: every Web API call the bot made, every message, ephemeral, modal and Home tab.
    emu = stack.emulator
    slack_side = [json.dumps(c.args, default=str) for c in emu.calls]
    for channel in emu.workspace.channels.values():
        slack_side += [json.dumps(m.blocks) + m.text for m in channel.messages]
        slack_side += [json.dumps(e.blocks) + e.text for e in channel.ephemerals]
    slack_side += [json.dumps(v.data) for stack_ in emu.workspace.modals.values() for v in stack_]
    slack_side += [json.dumps(v.data) for v in emu.workspace.homes.values()]
    slack_side += [d.body for d in emu.core.deliveries]
    logs = [r.getMessage() + str(r.args) for r in caplog.records if not r.name.startswith(DB_DRIVERS)]
    # Every field of every exported event but its hashes (hex digests: any run of digits turns up in one).
    exported = [
        json.dumps({k: v for k, v in dataclasses.asdict(r).items() if k not in ("hash", "prev_hash")}, default=str)
        async for r in export(stack.runtime.engine, "swarm")
    ]
    # Every metric's name and labels; not its sample values, where a duration such as 0.04111 is no leak.
    series = [
        s.name + json.dumps(s.labels) for family in text_string_to_metric_families(metrics) for s in family.samples
    ]
    assert len(slack_side) > 10 and len(logs) > 10 and len(exported) >= 3 and series  # there was something to look at
    for where, texts in {"slack": slack_side, "logs": logs, "metrics": series, "audit": exported}.items():
        for secret in (CARD, EMAIL, CARD[:6]):  # a card's first six digits: a partial mask is a leak too
            leaks = [t[:200] for t in texts if secret in t]
            assert not leaks, f"{secret} leaked to {where}: {leaks[:3]}"
