"""``countersign-mcp gate -- COMMAND…``: an MCP server in front of another, asking Countersign before each tool call.

The upstream's tools are listed as the upstream lists them (names, schemas, annotations), so
the model sees the same server. Each ``tools/call`` is first a Countersign request: the action
is the tool's name and the params are its arguments. The upstream runs the call only when the
answer is yes, with the reviewer's edited arguments if they edited them; for every other
answer it is not called and the model gets an error result (``isError``) that says why.

Fail closed: when Countersign cannot be asked, or the wait ends before anyone decides, the
call does not run. Asking again with the same arguments resumes the wait on the same request
(see ``_ask``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from countersign_client.mcp._ask import Answer, Asker

log = logging.getLogger("countersign_client.mcp")


@dataclass(frozen=True)
class Upstream:
    """The server behind the gate: a connected client, and names for the reviewers' card."""

    client: Client
    command: str  # the command's file name, e.g. npx
    server: str | None = None  # the name the server gives itself, e.g. secure-filesystem-server

    @property
    def label(self) -> str:
        return f"{self.server} via {self.command}" if self.server and self.server != self.command else self.command


def gate_context(tool: str, upstream: Upstream, workflow_id: str | None = None) -> dict[str, Any]:
    """What the reviewers see about where the call comes from: the card's title (a manifest's own
    ``summary`` template for the action wins over it) and labels that conditions may read
    (``context.labels.source == "mcp-gate"``)."""
    context: dict[str, Any] = {
        "summary": f"MCP tool {tool} on {upstream.label} (countersign-mcp gate)"[:500],
        "labels": {"source": "mcp-gate", "upstream": upstream.label[:500]},
    }
    if workflow_id:
        context["workflow_id"] = workflow_id  # one gate process, one agent session: max_pending counts per session
    return context


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def refusal(tool: str, answer: Answer, wait: float) -> types.CallToolResult:
    """The error result for a call that did not run: the model reads why, and whether asking again helps."""
    rid = answer.request_id
    ref = f" (Countersign request {rid})" if rid else ""
    if answer.verdict == "failed":
        return _error(
            f"{tool} was not run: Countersign could not be asked{ref}, and calls run only once approved. "
            f"Try again later or tell the user. Error: {answer.error}"
        )
    if answer.verdict == "waiting":
        return _error(
            f"{tool} was not run: no reviewer decided within {wait:.0f} s{ref}. Calling {tool} again with "
            "the same arguments keeps waiting on the same request; or tell the user it awaits approval."
        )
    request = answer.request
    assert request is not None
    by = f" by {answer.by}" if answer.by else ""
    reason = answer.reason or "no reason given"
    return _error(f"{tool} was not run: it was {request.status}{by}: {reason}{ref}.")


def _edited_note(tool: str, answer: Answer) -> types.TextContent:
    return types.TextContent(
        type="text",
        text=f"Note: a reviewer edited the arguments before approving; {tool} ran with {answer.params} "
        f"(Countersign request {answer.request_id}).",
    )


def build_gate(upstream: Upstream, asker: Asker, *, workflow_id: str | None = None) -> Server[Any]:
    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        page = await upstream.client.list_tools(cursor=params.cursor if params else None)
        # Rebuilt rather than returned: the upstream's cache hints are not ours to repeat.
        return types.ListToolsResult(tools=page.tools, next_cursor=page.next_cursor)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        tool, arguments = params.name, dict(params.arguments or {})
        answer = await asker.ask(
            tool, arguments, context=gate_context(tool, upstream, workflow_id), report=ctx.session.report_progress
        )
        if answer.verdict != "go":
            log.info("%s not run: %s", tool, answer.verdict)
            return refusal(tool, answer, asker.wait)
        base = answer.waited

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            # Progress must only grow for one token: the upstream's count starts after the wait's seconds.
            await ctx.session.report_progress(base + progress, None if base else total, message)

        try:
            result = await upstream.client.call_tool(tool, answer.params, progress_callback=forward)
        except MCPError:
            raise  # the upstream's own protocol error (an unknown tool, bad arguments) reaches the caller as is
        except Exception as exc:
            log.exception("the upstream failed on %s", tool)
            return _error(f"{tool} was approved but the upstream server failed: {exc}")
        if answer.edited:
            return result.model_copy(update={"content": [*result.content, _edited_note(tool, answer)]})
        return result

    return Server(
        f"countersign-gate ({upstream.label})",
        version="0.1.0",
        instructions=upstream.client.instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
