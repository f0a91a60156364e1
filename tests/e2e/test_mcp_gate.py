"""``countersign-mcp gate`` against the running service: an MCP client (the SDK's own) calls the tools of
an upstream MCP server through the gate, and reviewers decide in Slack (the emulator).

The ``mcp-notes`` tenant (written into this test's manifests directory) names its actions after the
upstream's tools (clients/python/tests/fixtures/mcp_upstream.py, the client package's own test fixture): ``read_note`` runs without a human,
``delete_note`` needs one, and its policy denies deleting the note ``audit-log`` outright. The upstream logs
every call it runs, so the test can show a rejected or denied call never reached it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP tests need the mcp package: pip install 'countersign-client[mcp]'")
pytest.importorskip("countersign_client.mcp", reason="needs countersign-client (clients/python) installed")

from mcp import Client, StdioServerParameters

from bot.ids import ActionId
from tests.e2e.conftest import Stack

UPSTREAM = Path(__file__).resolve().parents[2] / "clients" / "python" / "tests" / "fixtures" / "mcp_upstream.py"
NOTES_CHANNEL, KEEPER, OTHER_KEEPER = "C0NOTES", "U0KEEPER", "U0KEEPER2"

MANIFEST = f"""\
# The MCP gate's tenant: its actions are the upstream's tool names.
tenant: mcp-notes
admins: [U0NOTESADMIN]
defaults:
  timeout: 15m
  on_timeout: reject
  unknown_action: require_approval
  default_pool: keepers
pools:
  keepers:
    channel: {NOTES_CHANNEL}
    members: [{KEEPER}, {OTHER_KEEPER}]
actions:
  read_note:
    approval_required: false
  delete_note:
    reviewer_pool: keepers
    summary: "Delete the note {{name}}"
    deny_if: name == "audit-log"
    deny_reason: "The audit log is kept for the auditors"
"""


@pytest.fixture
def manifests(manifests: Path) -> Path:
    """The suite's manifests plus ``mcp-notes`` (the ``stack`` fixture serves whatever is here)."""
    (manifests / "mcp-notes.yaml").write_text(MANIFEST)
    return manifests


def gate_params(stack: Stack, log: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[
            "-m", "countersign_client.mcp.cli", "gate",
            "--url", stack.url, "--key", stack.keys["mcp-notes"], "--wait", "60",
            "--", sys.executable, str(UPSTREAM), "--log", str(log),
        ],
    )  # fmt: skip


def ran(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def test_a_gated_tool_runs_once_a_reviewer_approves_and_never_when_rejected(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "upstream-calls.jsonl"
    async with Client(gate_params(stack, log), cache=None, read_timeout_seconds=60) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["read_note", "delete_note"]

        # approval_required: false: straight through, no card.
        read = await client.call_tool("read_note", {"name": "plans"})
        assert not read.is_error and read.structured_content == {"text": "ship the gate"}

        approved = asyncio.create_task(client.call_tool("delete_note", {"name": "plans"}))
        await stack.slack.wait_for_message(NOTES_CHANNEL, action_id=ActionId.APPROVE, text="Delete the note plans")
        assert [c["tool"] for c in ran(log)] == ["read_note"]  # waiting for a human
        await stack.slack.click(KEEPER, channel=NOTES_CHANNEL, action_id=ActionId.APPROVE)
        result = await asyncio.wait_for(approved, 20)
        assert not result.is_error
        assert result.content[0].text == "deleted plans"  # type: ignore[union-attr]

        rejected = asyncio.create_task(client.call_tool("delete_note", {"name": "groceries"}))
        await stack.slack.wait_for_message(NOTES_CHANNEL, action_id=ActionId.APPROVE, text="Delete the note groceries")
        await stack.reject(OTHER_KEEPER, "we still need that list", channel=NOTES_CHANNEL)
        refused = await asyncio.wait_for(rejected, 20)

    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert f"delete_note was not run: it was rejected by {OTHER_KEEPER}: we still need that list" in text
    assert ran(log) == [
        {"tool": "read_note", "arguments": {"name": "plans"}},
        {"tool": "delete_note", "arguments": {"name": "plans"}},
    ]  # the rejected call never reached the upstream


async def test_a_call_the_policy_denies_is_never_run_and_the_model_reads_the_deny_reason(
    stack: Stack, tmp_path: Path
) -> None:
    log = tmp_path / "upstream-calls.jsonl"
    async with Client(gate_params(stack, log), cache=None, read_timeout_seconds=60) as client:
        denied = await asyncio.wait_for(client.call_tool("delete_note", {"name": "audit-log"}), 20)
    assert denied.is_error
    text = denied.content[0].text  # type: ignore[union-attr]
    assert "delete_note was not run: it was denied by policy: The audit log is kept for the auditors" in text
    assert ran(log) == []  # the upstream never saw the call
    assert stack.slack.messages(NOTES_CHANNEL) == []  # and no reviewer was asked
