"""Claude Code's PreToolUse hook (``POST /v1/hooks/claude-code``) through the real service and Slack emulator.

The ``devbox`` tenant below reviews ``rm`` and ``--force`` Bash commands in #leads and lets the rest
through; its ``Write`` tool is async (run now, reviewed after); any other tool is denied at the door.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from bot.ids import ActionId
from tests.e2e.conftest import Stack

LEADS, KIM = "C0LEADS", "U0KIM"
DEVBOX = """\
tenant: devbox
admins: [U0LEAD]
defaults:
  timeout: 15m
  on_timeout: reject
  unknown_action: deny
  default_pool: leads
pools:
  leads:
    channel: C0LEADS
    members: [U0LEAD, U0KIM]
actions:
  Bash:
    description: Run a shell command
    if: 'command.startsWith("rm ") || command.contains("--force")'
    reviewer_pool: leads
  Write:
    description: Write a file
    blocking: false
    reviewer_pool: leads
"""
HOOK = "/v1/hooks/claude-code"


@pytest.fixture
def manifests(manifests: Path) -> Path:
    (manifests / "devbox.yaml").write_text(DEVBOX)
    return manifests


def bash(command: str, tool_use_id: str = "toolu_01", **extra: Any) -> dict[str, Any]:
    """A PreToolUse hook input as Claude Code sends it, with the fields it adds that we do not read."""
    return {
        "session_id": "3f1c9a2e-session",
        "transcript_path": "/home/dev/.claude/projects/app/3f1c9a2e.jsonl",
        "cwd": "/home/dev/app",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": f"Run {command}"},
        "tool_use_id": tool_use_id,
        **extra,
    }


async def hook(stack: Stack, body: Any, query: str = "", *, key: str | None = None) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, Countersign-* headers) of one hook call."""
    headers = {"Authorization": f"Bearer {key or stack.keys['devbox']}"}
    async with stack.http.post(stack.url + HOOK + query, json=body, headers=headers) as resp:
        found = {k: v for k, v in resp.headers.items() if k.lower().startswith("countersign-")}
        return resp.status, await resp.json(), found


def decision(body: dict[str, Any]) -> tuple[str, str]:
    out = body["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"], out["permissionDecisionReason"]


def cards(stack: Stack, request_id: str) -> int:
    return len([m for m in stack.slack.messages(LEADS) if request_id in repr(m.blocks)])


async def test_an_auto_approved_bash_command_is_allowed(stack: Stack) -> None:
    status, body, headers = await hook(stack, bash("ls -la"))
    verdict, reason = decision(body)
    assert (status, verdict) == (200, "allow")
    assert "auto-approved" in reason and headers["Countersign-Request-Id"] in reason
    assert headers["Countersign-Request-Status"] == "auto_approved"
    assert stack.slack.messages(LEADS) == []  # no card for what the policy lets through


async def test_a_rejected_rm_is_denied_with_the_reviewers_reason(stack: Stack) -> None:
    asking = asyncio.create_task(hook(stack, bash("rm -rf build"), "?wait=30"))
    card = await stack.slack.wait_for_message(LEADS, action_id=ActionId.REJECT)
    assert "rm -rf build" in repr(card.blocks)
    await stack.reject(KIM, "build/ is shared with CI, clean your own dir", channel=LEADS)
    status, body, headers = await asyncio.wait_for(asking, timeout=15)
    verdict, reason = decision(body)
    assert (status, verdict, headers["Countersign-Request-Status"]) == (200, "deny", "rejected")
    assert "build/ is shared with CI, clean your own dir" in reason and KIM in reason


async def test_nobody_answering_in_time_denies_by_default_or_asks_when_told(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, headers = await hook(stack, bash("git push --force", "toolu_a"), "?wait=1")
    assert loop.time() - started >= 0.9  # it waited for a reviewer first
    verdict, reason = decision(body)
    request_id = headers["Countersign-Request-Id"]
    assert (status, verdict, headers["Countersign-Request-Status"]) == (200, "deny", "pending")
    assert request_id in reason and "Slack" in reason

    status, body, headers = await hook(stack, bash("git push --force", "toolu_b"), "?wait=1&on_pending=ask")
    verdict, reason = decision(body)
    assert (status, verdict) == (200, "ask")
    assert headers["Countersign-Request-Id"] != request_id and headers["Countersign-Request-Id"] in reason

    # Prefer: wait=N sets the bound too, as on the agent API.
    headers_in = {"Authorization": f"Bearer {stack.keys['devbox']}", "Prefer": "wait=1"}
    async with stack.http.post(stack.url + HOOK, json=bash("rm x", "toolu_c"), headers=headers_in) as resp:
        assert decision(await resp.json())[0] == "deny"


async def test_the_same_call_asked_again_finds_its_request_and_its_decision(stack: Stack) -> None:
    call = bash("rm -rf node_modules", "toolu_again")
    _, body, first = await hook(stack, call, "?wait=0")
    assert decision(body)[0] == "deny" and first["Countersign-Request-Status"] == "pending"
    request_id = first["Countersign-Request-Id"]
    await stack.slack.wait_for_message(LEADS, action_id=ActionId.APPROVE)
    # Claude Code adds fields that change between calls (permission_mode): still the same request.
    _, _, again = await hook(stack, {**call, "permission_mode": "acceptEdits"}, "?wait=0")
    assert again["Countersign-Request-Id"] == request_id

    await stack.slack.click(KIM, channel=LEADS, action_id=ActionId.APPROVE)
    status, body, decided = await hook(stack, call, "?wait=10")
    verdict, reason = decision(body)
    assert (status, verdict, decided["Countersign-Request-Id"]) == (200, "allow", request_id)
    assert f"approved by {KIM}" in reason
    assert cards(stack, request_id) == 1

    # Another session running the same command is another request.
    _, _, other = await hook(stack, {**call, "session_id": "another-session"}, "?wait=0")
    assert other["Countersign-Request-Id"] != request_id


async def test_a_call_without_a_tool_use_id_is_found_again_by_its_content(stack: Stack) -> None:
    call = {k: v for k, v in bash("rm -rf dist").items() if k != "tool_use_id"}
    _, _, first = await hook(stack, call, "?wait=0")
    _, _, again = await hook(stack, call, "?wait=0")
    assert first["Countersign-Request-Id"] == again["Countersign-Request-Id"]
    _, _, moved = await hook(stack, {**call, "cwd": "/home/dev/other"}, "?wait=0")  # not a 409
    assert moved["Countersign-Request-Id"] != first["Countersign-Request-Id"]


async def test_an_async_tool_is_allowed_at_once_and_reviewed_after(stack: Stack) -> None:
    write = {**bash("x"), "tool_name": "Write", "tool_input": {"file_path": "/home/dev/app/a.txt", "content": "hi"}}
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, headers = await hook(stack, write)
    assert loop.time() - started < 5  # not held for the default wait
    assert (status, decision(body)[0], headers["Countersign-Request-Status"]) == (200, "allow", "pending")
    await stack.slack.wait_for_message(LEADS, action_id=ActionId.APPROVE)


async def test_a_tool_the_manifest_does_not_have_is_denied_under_unknown_action_deny(stack: Stack) -> None:
    status, body, _ = await hook(stack, {**bash("x"), "tool_name": "WebFetch", "tool_input": {"url": "https://x"}})
    verdict, reason = decision(body)
    assert (status, verdict) == (200, "deny")
    assert "'WebFetch' is not in the manifest" in reason


@pytest.mark.parametrize(
    ("body", "query", "field", "said"),
    [
        ({**bash("ls"), "hook_event_name": "PostToolUse"}, "", "hook_event_name", "only PreToolUse"),
        ({**bash("ls"), "tool_input": ["ls"]}, "", "tool_input", "dictionary"),
        ({k: v for k, v in bash("ls").items() if k != "tool_name"}, "", "tool_name", "required"),
        ({**bash("ls"), "tool_name": "Bash tool"}, "", "tool_name", "pattern"),
        ({**bash("ls"), "session_id": 7}, "", "session_id", "string"),
        (bash("ls"), "?on_pending=maybe", "on_pending", "'deny' or 'ask'"),
        (bash("ls"), "?wait=soon", "wait", "whole seconds"),
    ],
)
async def test_a_bad_hook_call_is_a_deny_naming_the_problem(
    stack: Stack, body: Any, query: str, field: str, said: str
) -> None:
    """Claude Code runs the tool when an http hook answers anything but 2xx: a refusal must be a deny."""
    status, answer, headers = await hook(stack, body, query)
    verdict, reason = decision(answer)
    assert (status, verdict, headers["Countersign-Error"]) == (200, "deny", "invalid")
    assert "422 invalid" in reason and field in reason and said in reason and "the tool was not run" in reason
    assert stack.slack.messages(LEADS) == []  # nothing was asked


async def test_the_hook_takes_the_agent_api_key_and_refuses_others(stack: Stack) -> None:
    status, answer, headers = await hook(stack, bash("ls"), key="cs_devbox_nope")
    verdict, reason = decision(answer)
    assert (status, verdict, headers["Countersign-Error"]) == (200, "deny", "unauthorized")
    assert "401 unauthorized" in reason
    async with stack.http.post(stack.url + HOOK, data=b"{not json", headers={
        "Authorization": f"Bearer {stack.keys['devbox']}"}) as resp:  # fmt: skip
        assert (resp.status, resp.headers["Countersign-Error"]) == (200, "malformed_json")
        assert decision(await resp.json())[0] == "deny"


async def test_the_command_hook_of_the_client_package_answers_through_the_service(stack: Stack) -> None:
    from countersign_client.hook import main

    out = io.StringIO()
    args = ["claude-code", "--url", stack.url, "--key", stack.keys["devbox"]]
    code = await asyncio.to_thread(main, args, stdin=io.StringIO(json.dumps(bash("ls"))), stdout=out)
    assert code == 0
    assert decision(json.loads(out.getvalue()))[0] == "allow"

    out = io.StringIO()
    args = ["claude-code", "--url", stack.url, "--key", "cs_devbox_nope"]
    await asyncio.to_thread(main, args, stdin=io.StringIO(json.dumps(bash("ls"))), stdout=out)
    verdict, reason = decision(json.loads(out.getvalue()))
    assert verdict == "deny" and "401" in reason
