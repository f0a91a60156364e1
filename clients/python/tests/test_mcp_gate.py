"""``countersign-mcp gate``: the SDK's client drives the gate in-process; the gate drives a real stdio upstream.

The upstream is tests/fixtures/mcp_upstream.py run as a subprocess; it logs every call it runs,
so a test can prove that a refused call never reached it. Countersign is ``FakeCountersign``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters

from countersign_client.mcp import Asker, Upstream, build_gate
from tests.test_mcp_serve import FakeCountersign

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "mcp_upstream.py"


class Gated:
    """A gate in front of the fixture upstream, and what the upstream ran."""

    def __init__(self, log: Path, client: Client, upstream: Client, service: FakeCountersign) -> None:
        self.log, self.client, self.upstream, self.service = log, client, upstream, service

    def ran(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@asynccontextmanager
async def gate_in_front(tmp_path: Path) -> AsyncIterator[Gated]:
    """Not a fixture: the SDK's task groups must be entered and left in the test's own task."""
    if not UPSTREAM.exists():
        pytest.skip(f"the upstream fixture is not at {UPSTREAM} (run from the Countersign repository)")
    log = tmp_path / "calls.jsonl"
    service = FakeCountersign(outcomes={"read_note": "auto_approved"})
    params = StdioServerParameters(command=sys.executable, args=[str(UPSTREAM), "--log", str(log)])
    async with Client(params, cache=None) as upstream:
        front = Upstream(upstream, "python", upstream.server_info.name if upstream.server_info else None)
        asker = Asker(service.client(max_retries=0), wait=30, progress_every=0.05)
        async with Client(build_gate(front, asker, workflow_id="mcp-gate-test")) as client:
            yield Gated(log, client, upstream, service)


async def test_the_upstream_tools_are_listed_unchanged(tmp_path: Path) -> None:
    async with gate_in_front(tmp_path) as gated:
        direct = (await gated.upstream.list_tools()).tools
        through = (await gated.client.list_tools()).tools
        assert [t.name for t in through] == ["read_note", "delete_note"]
        assert [t.model_dump() for t in through] == [t.model_dump() for t in direct]  # schemas, annotations and all


async def test_an_auto_approved_call_passes_straight_through(tmp_path: Path) -> None:
    async with gate_in_front(tmp_path) as gated:
        result = await gated.client.call_tool("read_note", {"name": "plans"})
        assert not result.is_error
        assert result.structured_content == {"text": "ship the gate"}
        assert gated.ran() == [{"tool": "read_note", "arguments": {"name": "plans"}}]
        (body,) = gated.service.bodies
        assert (body["action"], body["params"]) == ("read_note", {"name": "plans"})
        assert body["context"] == {
            "summary": "MCP tool read_note on notes via python (countersign-mcp gate)",
            "labels": {"source": "mcp-gate", "upstream": "notes via python"},
            "workflow_id": "mcp-gate-test",
        }


async def test_a_rejected_call_never_reaches_the_upstream(tmp_path: Path) -> None:
    async with gate_in_front(tmp_path) as gated:
        seen: list[str | None] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(message)

        call = asyncio.create_task(
            gated.client.call_tool("delete_note", {"name": "plans"}, progress_callback=on_progress)
        )
        rid = await gated.service.pending()
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
        gated.service.decide(rid, "rejected", by="U0CHLOE", reason="those plans are still needed")
        result = await asyncio.wait_for(call, 5)
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert text == (
            f"delete_note was not run: it was rejected by U0CHLOE: those plans are still needed (Countersign request {rid})."
        )
        assert seen[0] == f"waiting for a reviewer in support_tier_1 (request {rid})"
        assert gated.ran() == []


async def test_a_call_the_policy_denies_is_an_error_with_the_reason_and_never_reaches_the_upstream(
    tmp_path: Path,
) -> None:
    async with gate_in_front(tmp_path) as gated:
        gated.service.outcomes["delete_note"] = "denied"  # a deny_if rule: decided on arrival, no card
        result = await gated.client.call_tool("delete_note", {"name": "plans"})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert text == "delete_note was not run: it was denied by policy: denied by rule (Countersign request r1)."
        assert gated.ran() == []
        assert gated.service.gets == 0  # decided on arrival: no wait


async def test_an_approved_call_waits_then_runs_with_the_reviewers_edit(tmp_path: Path) -> None:
    async with gate_in_front(tmp_path) as gated:
        call = asyncio.create_task(gated.client.call_tool("delete_note", {"name": "plans", "reason": "stale"}))
        rid = await gated.service.pending()
        assert gated.ran() == []  # still waiting for a human
        gated.service.decide(rid, "approved", params={"name": "groceries"})
        result = await asyncio.wait_for(call, 5)
        assert not result.is_error
        texts = [c.text for c in result.content]  # type: ignore[union-attr]
        assert texts[0] == "deleted groceries"
        assert "a reviewer edited the arguments" in texts[1]
        assert gated.ran() == [{"tool": "delete_note", "arguments": {"name": "groceries"}}]


async def test_an_unreachable_countersign_fails_closed(tmp_path: Path) -> None:
    async with gate_in_front(tmp_path) as gated:
        gated.service.down = True
        result = await gated.client.call_tool("read_note", {"name": "plans"})
        assert result.is_error
        assert "read_note was not run: Countersign could not be asked" in result.content[0].text  # type: ignore[union-attr]
        assert gated.ran() == []


async def test_a_call_still_pending_after_the_wait_is_not_run_and_names_the_request(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    service = FakeCountersign()
    params = StdioServerParameters(command=sys.executable, args=[str(UPSTREAM), "--log", str(log)])
    async with Client(params, cache=None) as upstream:
        gate = build_gate(Upstream(upstream, "python"), Asker(service.client(max_retries=0), wait=1))
        async with Client(gate) as client:
            first = await client.call_tool("delete_note", {"name": "plans"})
            assert first.is_error
            assert "no reviewer decided within 1 s (Countersign request r1)" in first.content[0].text  # type: ignore[union-attr]
            service.decide("r1", "approved")
            again = await client.call_tool("delete_note", {"name": "plans"})
    assert not again.is_error and len(service.bodies) == 1  # the re-call found r1 and its approval
    assert [c["tool"] for c in map(json.loads, log.read_text().splitlines())] == ["delete_note"]
