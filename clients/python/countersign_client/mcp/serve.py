"""``countersign-mcp serve``: ``request_approval``, for a model that asks before it acts, and ``ask_human``
(``countersign_client.mcp._human``), for one that needs a person's answer.

The tool submits the request, sends progress notifications while a human decides (when the caller
sent a ``progressToken``), and returns the decision as structured content. A "no" is an answer,
not a failure: ``isError`` is false and the text says what was decided and why, so the model
reads it and changes course. ``isError`` is true only when no decision could be had (Countersign
unreachable, or the request refused as invalid).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from countersign_client.mcp._ask import Answer, Asker
from countersign_client.mcp._human import TOOL as ASK_HUMAN
from countersign_client.mcp._human import HumanAsker

TOOL_NAME = "request_approval"

# What the service accepts in ``context`` (any other field is a 422): the tool drops the rest.
CONTEXT_FIELDS = ("summary", "reason", "links", "on_behalf_of", "workflow_id")

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "description": "The action, as the team's Countersign manifest names it (e.g. process_refund).",
        },
        "params": {
            "type": "object",
            "description": "Exactly what the action will do: the manifest's conditions and the reviewers read these.",
        },
        "context": {
            "type": "object",
            "description": "Why you ask, shown to the reviewer.",
            "properties": {
                "reason": {"type": "string", "description": "Why this action is needed (at most 2,000 characters)."},
                "summary": {"type": "string", "description": "A one-line title for the review card."},
                "links": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
                "workflow_id": {"type": "string", "description": "Groups related requests (a ticket, a run)."},
                "on_behalf_of": {"type": "string", "description": "Slack user id of the person you act for."},
            },
            "additionalProperties": False,
        },
    },
    "required": ["action", "params"],
    "additionalProperties": False,
}

_NULLABLE_STRING = {"type": ["string", "null"]}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "proceed": {"type": "boolean", "description": "Whether you may go ahead now."},
        "status": {
            "type": "string",
            "description": "auto_approved, approved, denied, rejected, expired, cancelled or pending.",
        },
        "outcome": {**_NULLABLE_STRING, "description": "The decision (an expired request's is on_timeout's)."},
        "by": {**_NULLABLE_STRING, "description": "A Slack user id, or policy / timeout / agent."},
        "reason": _NULLABLE_STRING,
        "params": {
            "type": ["object", "null"],
            "description": "The params a reviewer approved in place of yours: act with these.",
        },
        "request_id": {"type": "string"},
        "mode": {"type": "string", "description": "sync; async or sample: reviewed after you act."},
    },
    "required": ["proceed", "status", "request_id"],
}

TOOL = types.Tool(
    name=TOOL_NAME,
    title="Ask a human before acting",
    description=(
        "Ask the team's reviewers (in Slack, through Countersign) before a consequential action. "
        "Call it with the action's name and its exact params, then do what the answer says: act only "
        "when proceed is true, with the returned params if a reviewer edited them. A rejection comes "
        "with the reviewer's reason. If it is still pending when the wait ends, call again with the "
        "same action and params to keep waiting on the same request."
    ),
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
)


def _text(result: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=result)]


def _failed(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=_text(message), is_error=True)


def structured(answer: Answer) -> dict[str, Any]:
    request = answer.request
    assert request is not None
    decision = request.decision
    return {
        "proceed": answer.verdict == "go",
        "status": request.status,
        "outcome": decision.outcome if decision is not None else None,
        "by": answer.by,
        "reason": answer.reason,
        "params": answer.params if answer.edited else None,
        "request_id": request.id,
        "mode": request.mode,
    }


def describe(action: str, answer: Answer) -> str:
    """The answer in words, for a model that reads the text rather than the structured content."""
    request = answer.request
    assert request is not None
    ref = f"(Countersign request {request.id})"
    reason = answer.reason or "no reason given"
    by = f" by {answer.by}" if answer.by else ""
    if answer.verdict == "waiting":
        return (
            f"{action} is still waiting for a reviewer after {answer.waited:.0f} s {ref}. Do not act yet; "
            "call request_approval again with the same action and params to keep waiting on this request."
        )
    if answer.verdict == "no":
        return f"{action} was {request.status}{by}: {reason} {ref}. Do not do it; reconsider or ask the user."
    if request.pending:  # non-blocking: reviewed after the fact
        return f"{action} may go ahead now; a reviewer checks it afterwards and may undo it {ref}."
    edited = ""
    if answer.edited:
        edited = f" A reviewer edited the params: act with exactly these instead of yours: {answer.params}."
    how = "was approved automatically by policy" if request.status == "auto_approved" else f"was approved{by}"
    return f"{action} {how} {ref}. Go ahead.{edited}"


def _arguments(params: types.CallToolRequestParams) -> tuple[str, dict[str, Any], dict[str, Any]] | str:
    """(action, params, context) from the call's arguments, or why they do not make a request."""
    args = params.arguments or {}
    action, asked, context = args.get("action"), args.get("params", {}), args.get("context") or {}
    if not isinstance(action, str) or not action.strip():
        return "request_approval needs an action: the name the manifest gives it, e.g. process_refund"
    if not isinstance(asked, dict):
        return "params must be an object: the action's arguments, by name"
    if not isinstance(context, Mapping):
        return "context must be an object (reason, summary, links, workflow_id, on_behalf_of)"
    kept = {k: v for k, v in context.items() if k in CONTEXT_FIELDS and v not in (None, "", [])}
    return action.strip(), asked, kept


def build_server(asker: Asker, *, name: str = "countersign") -> Server[Any]:
    human = HumanAsker(asker.client, wait=asker.wait)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[TOOL, ASK_HUMAN])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == ASK_HUMAN.name:
            return await human.call(params.arguments or {})
        if params.name != TOOL_NAME:
            raise MCPError(
                types.INVALID_PARAMS, f"unknown tool {params.name!r}: this server has {TOOL_NAME} and {ASK_HUMAN.name}"
            )
        parsed = _arguments(params)
        if isinstance(parsed, str):
            return _failed(parsed)
        action, asked, context = parsed
        answer = await asker.ask(action, asked, context=context, report=ctx.session.report_progress)
        if answer.verdict == "failed":
            where = f" (request {answer.request_id})" if answer.request_id else ""
            # The error comes last: it is a sentence of its own, with its own punctuation.
            return _failed(f"Could not get a decision on {action}{where}; do not act on it. Error: {answer.error}")
        return types.CallToolResult(content=_text(describe(action, answer)), structured_content=structured(answer))

    return Server(
        name,
        version="0.1.0",
        instructions="Call request_approval before any action your team reviews; act only when proceed is true.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
