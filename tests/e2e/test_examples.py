"""The examples in examples/, run as their docstrings say, against the real service and the Slack emulator.

Each agent example runs as its own process (``sys.executable``) with ``COUNTERSIGN_URL`` and
``COUNTERSIGN_API_KEY`` pointing at the test's service and no ``OPENAI_API_KEY``, so it uses its
scripted stand-in model. acme-support's manifest lets a refund of 20 through and sends one of 620 to
tier 1's review: the test clicks on that card while the example waits. The MCP example
(examples/mcp/mcp.json) starts its servers as the config says, driven by the MCP SDK's own client.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import pytest

from bot.ids import ActionId
from tests.dbsupport import database_url
from tests.e2e.conftest import BEN, CHLOE, TIER1, Stack, refund

if TYPE_CHECKING:
    from mcp import StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LIMIT = 60.0  # seconds: the bound on every wait for an example
REASON = "this order was refunded last week"
MCP = EXAMPLES / "mcp"
FILESYSTEM_SERVER = "@modelcontextprotocol/server-filesystem"
FILESYSTEM_STAND_IN = ROOT / "tests" / "fixtures" / "mcp_filesystem.py"

# name: (the script and its flags, the module it needs, its exit status when a reviewer rejects)
AGENTS: dict[str, tuple[list[str], str | None, int]] = {
    "refund_agent": (["refund_agent.py"], None, 1),
    "langgraph": (["langgraph_agent.py"], "langgraph", 0),
    "langgraph_interrupt": (["langgraph_agent.py", "--interrupt"], "langgraph", 0),
    "openai_agents": (["openai_agents_agent.py"], "agents", 0),
}


@pytest.fixture
async def db_url(tmp_path: Path) -> AsyncIterator[str]:
    """SQLite alone: the examples exercise the agent's side, the same whichever database the service keeps,
    and each example process takes seconds to start (the store's own tests cover PostgreSQL)."""
    async with database_url("sqlite", tmp_path) as url:
        yield url


@pytest.fixture
def manifests(manifests: Path) -> Path:
    """The suite's manifests with examples/mcp/filesystem-actions.yaml pasted under acme-support's ``actions:``,
    as examples/mcp/README.md says (the agent examples' ``process_refund`` is unchanged)."""
    acme = manifests / "acme-support.yaml"
    pasted = (MCP / "filesystem-actions.yaml").read_text()
    acme.write_text(acme.read_text().replace("\nactions:\n", f"\nactions:\n{pasted}", 1))
    return manifests


def refunded(amount: int) -> str:
    return f"refunded {amount} EUR to Ana for order A-1001"


def example_env(stack: Stack) -> dict[str, str]:
    """This environment without Countersign's or OpenAI's settings, then the test service's URL and key."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("COUNTERSIGN_", "OPENAI_"))}
    return {**keep, "COUNTERSIGN_URL": stack.url, "COUNTERSIGN_API_KEY": stack.keys["acme-support"]}


@dataclass
class Run:
    """A running example: its process and the task collecting its output."""

    proc: asyncio.subprocess.Process
    output: asyncio.Task[tuple[bytes, bytes]]

    async def finished(self) -> tuple[int, str, str]:
        """Its exit status, stdout and stderr, once it exits (within LIMIT)."""
        out, err = await asyncio.wait_for(asyncio.shield(self.output), LIMIT)
        assert self.proc.returncode is not None
        return self.proc.returncode, out.decode(), err.decode()

    async def card(self, stack: Stack) -> None:
        """Wait for the refund's card in tier 1; fail with what the example said if it exits first."""
        card = asyncio.create_task(
            stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="order A-1001", timeout=LIMIT)
        )
        done, _ = await asyncio.wait({card, self.output}, timeout=LIMIT, return_when=asyncio.FIRST_COMPLETED)
        if card not in done:
            card.cancel()
            out, err = self.output.result() if self.output in done else (b"", b"(still running)")
            raise AssertionError(f"no card in {TIER1}; the example said:\n{out.decode()}\n{err.decode()}")


@asynccontextmanager
async def running(stack: Stack, name: str, amount: int, cwd: Path) -> AsyncIterator[Run]:
    """``examples/SCRIPT AMOUNT [FLAGS]`` as a process, killed if still running when the block ends."""
    argv, needs, _ = AGENTS[name]
    if needs is not None:
        pytest.importorskip(needs, reason=f"examples/{argv[0]} needs {needs} (pip install './clients/python[...]')")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / argv[0]), str(amount), *argv[1:],
        cwd=cwd, env=example_env(stack), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    run = Run(proc, asyncio.create_task(proc.communicate()))
    try:
        yield run
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(run.output, LIMIT)


@pytest.mark.parametrize("name", list(AGENTS))
async def test_a_small_refund_passes_at_once(stack: Stack, tmp_path: Path, name: str) -> None:
    async with running(stack, name, 20, tmp_path) as run:
        status, out, err = await run.finished()
    assert (status, "Traceback" in err) == (0, False), (out, err)
    assert refunded(20) in out, out
    assert stack.slack.find_message(TIER1, action_id=ActionId.APPROVE) is None  # no human was asked


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("name", list(AGENTS))
async def test_a_large_refund_waits_for_a_reviewer(stack: Stack, tmp_path: Path, name: str, decision: str) -> None:
    async with running(stack, name, 620, tmp_path) as run:
        await run.card(stack)
        assert not run.output.done()  # waiting for a human
        if decision == "approve":
            await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
        else:
            await stack.reject(CHLOE, REASON)
        status, out, err = await run.finished()
    assert "Traceback" not in err, err
    if decision == "approve":
        assert (status, refunded(620) in out) == (0, True), (out, err)
    else:
        assert (status, refunded(620) in out, REASON in out) == (AGENTS[name][2], False, True), (out, err)


def mcp_server(stack: Stack, name: str) -> StdioServerParameters:
    """Server ``name`` of examples/mcp/mcp.json as the MCP SDK's stdio parameters. Its env is the config's,
    with ``${COUNTERSIGN_API_KEY}`` the test's key and ``COUNTERSIGN_URL`` the test service (the config
    names the sandbox's http://127.0.0.1:3000)."""
    from mcp import StdioServerParameters

    entry = json.loads((MCP / "mcp.json").read_text())["mcpServers"][name]
    env = {k: Template(v).substitute(COUNTERSIGN_API_KEY=stack.keys["acme-support"]) for k, v in entry["env"].items()}
    command = shutil.which(entry["command"], path=str(Path(sys.executable).parent)) or entry["command"]
    return StdioServerParameters(command=command, args=entry["args"], env={**env, "COUNTERSIGN_URL": stack.url})


@pytest.mark.parametrize("decision", ["policy", "approve", "reject"])
async def test_the_mcp_example_server_answers_request_approval(stack: Stack, decision: str) -> None:
    pytest.importorskip("countersign_client.mcp", reason="needs the mcp extra: pip install './clients/python[mcp]'")
    from mcp import Client

    params = {**refund("A-1001"), "amount": 20 if decision == "policy" else 620}
    ask = {"action": "process_refund", "params": params, "context": {"reason": "customer was charged twice"}}
    async with Client(mcp_server(stack, "countersign"), cache=None, read_timeout_seconds=LIMIT) as client:
        call = asyncio.create_task(client.call_tool("request_approval", ask))
        if decision != "policy":
            await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="order A-1001", timeout=LIMIT)
            assert not call.done()  # waiting for a human
            if decision == "approve":
                await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
            else:
                await stack.reject(CHLOE, REASON)
        result = await asyncio.wait_for(call, LIMIT)
    assert not result.is_error and result.structured_content is not None, result
    answer = {k: result.structured_content[k] for k in ("proceed", "status", "by", "reason")}
    assert (
        answer
        == {
            "policy": {"proceed": True, "status": "auto_approved", "by": "policy", "reason": answer["reason"]},
            "approve": {"proceed": True, "status": "approved", "by": BEN, "reason": None},
            "reject": {"proceed": False, "status": "rejected", "by": CHLOE, "reason": REASON},
        }[decision]
    )
    text = result.content[0].text  # type: ignore[union-attr]
    assert "Go ahead" in text if decision != "reject" else f"rejected by {CHLOE}: {REASON}" in text, text


async def test_the_mcp_example_gate_writes_a_file_only_once_a_reviewer_approves(stack: Stack, tmp_path: Path) -> None:
    """examples/mcp/mcp.json's ``filesystem``: the gate, as the config starts it, in front of a filesystem
    server. npm's (``npx -y @modelcontextprotocol/server-filesystem``) is swapped for
    tests/fixtures/mcp_filesystem.py, which serves the same two tools, so the test needs no Node.js or network."""
    pytest.importorskip("countersign_client.mcp", reason="needs the mcp extra: pip install './clients/python[mcp]'")
    from mcp import Client

    server = mcp_server(stack, "filesystem")
    gate, upstream = server.args[: server.args.index("--") + 1], server.args[server.args.index("--") + 1 :]
    assert upstream[:3] == ["npx", "-y", FILESYSTEM_SERVER], upstream  # what the stand-in stands for
    server.args = [*gate, sys.executable, str(FILESYSTEM_STAND_IN), str(tmp_path)]

    approved, refused = tmp_path / "approved.txt", tmp_path / "refused.txt"
    async with Client(server, cache=None, read_timeout_seconds=LIMIT) as client:
        assert {"write_file", "read_text_file"} <= {t.name for t in (await client.list_tools()).tools}

        write = asyncio.create_task(client.call_tool("write_file", {"path": str(approved), "content": "hello"}))
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="approved.txt", timeout=LIMIT)
        assert not write.done() and not approved.exists()  # waiting for a human
        await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
        assert not (await asyncio.wait_for(write, LIMIT)).is_error
        assert approved.read_text() == "hello"

        read = await asyncio.wait_for(client.call_tool("read_text_file", {"path": str(approved)}), LIMIT)
        assert not read.is_error and "hello" in read.content[0].text  # type: ignore[union-attr]

        write = asyncio.create_task(client.call_tool("write_file", {"path": str(refused), "content": "no"}))
        await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text="refused.txt", timeout=LIMIT)
        await stack.reject(CHLOE, REASON)
        rejected = await asyncio.wait_for(write, LIMIT)
    assert rejected.is_error and REASON in rejected.content[0].text, rejected  # type: ignore[union-attr]
    assert not refused.exists()  # the upstream was never called
