"""``countersign-mcp serve --http PORT`` against the running service: the server runs as its own process,
and an MCP client (the SDK's own streamable HTTP client) lists its tools and asks for approvals, one
decided by the policy at once and one by a reviewer in Slack (the emulator).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the MCP tests need the mcp package: pip install 'countersign-client[mcp]'")
pytest.importorskip("countersign_client.mcp", reason="needs countersign-client (clients/python) installed")

from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bot.ids import ActionId
from tests.e2e.conftest import CHLOE, TIER1, Stack, refund
from tests.serviceproc import free_port


@asynccontextmanager
async def serving_http(stack: Stack, log: Path) -> AsyncIterator[str]:
    """``countersign-mcp serve --http`` on a free port for acme-support; its MCP endpoint once it listens."""
    port = free_port()
    with log.open("ab") as sink:  # a file, not a pipe nobody reads
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "countersign_client.mcp.cli", "serve", "--http", str(port),
            "--url", stack.url, "--key", stack.keys["acme-support"], "--wait", "60",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    try:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError(f"countersign-mcp exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        else:
            raise AssertionError(f"countersign-mcp never listened on {port}: {log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_serve_over_streamable_http_answers_a_policy_approval_and_a_reviewers_rejection(
    stack: Stack, tmp_path: Path
) -> None:
    said: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        said.append(message)

    async with (
        serving_http(stack, tmp_path / "countersign-mcp.log") as url,
        Client(streamable_http_client(url), cache=None, read_timeout_seconds=60) as client,
    ):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"request_approval", "ask_human"}
        assert tools["request_approval"].input_schema["required"] == ["action", "params"]

        # $120: under the manifest's `if: amount > 500`, approved by the policy at once.
        small = await client.call_tool(
            "request_approval", {"action": "process_refund", "params": {**refund("H-1"), "amount": 120}}
        )
        assert not small.is_error
        assert small.structured_content is not None
        assert {k: small.structured_content[k] for k in ("proceed", "status", "by")} == (
            {"proceed": True, "status": "auto_approved", "by": "policy"}
        )

        # $620: a card in tier 1; the answer comes back over HTTP once Chloe rejects it.
        asking = asyncio.create_task(
            client.call_tool(
                "request_approval",
                {"action": "process_refund", "params": refund("H-2"), "context": {"reason": "charged twice"}},
                progress_callback=on_progress,
            )
        )
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="order H-2")
        await stack.reject(CHLOE, "refunded last week")
        rejected = await asyncio.wait_for(asking, 20)

    assert not rejected.is_error  # a "no" is an answer the model reads, not a failure
    answer = rejected.structured_content
    assert answer is not None
    assert (answer["proceed"], answer["status"], answer["by"], answer["reason"]) == (
        False,
        "rejected",
        CHLOE,
        "refunded last week",
    )
    assert f"rejected by {CHLOE}: refunded last week" in rejected.content[0].text  # type: ignore[union-attr]
    assert said[:1] == [f"waiting for a reviewer in support_tier_1 (request {answer['request_id']})"]
