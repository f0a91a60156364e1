"""LangGraph / LangChain: gate a tool behind Countersign (``pip install 'countersign-client[langgraph]'``).

    from countersign_client import Countersign
    from countersign_client.langgraph import gated

    refund = gated(process_refund, Countersign(), action="process_refund")   # same name and args schema
    tools = ToolNode([refund, lookup_order])

``mode="wait"`` asks and long-polls in the tool call. ``mode="interrupt"`` asks, and while the request
is pending pauses the graph with ``interrupt()``; resume it with ``resume_command(request, interrupts)``
(from the async callback, or from anything that reads the decision). Either way the tool runs only if
approved (with the reviewer's edited params, if any); otherwise the model gets the tool message
``"Rejected by <who>: <reason> ..."``, so it can tell the user or try something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.types import Command, Interrupt, interrupt
from pydantic import BaseModel

from countersign_client.client import AsyncCountersign, Countersign
from countersign_client.errors import CountersignError, StillPending
from countersign_client.models import ApprovalRequest
from countersign_client.words import refusal

__all__ = ["GatedTool", "gated", "refusal", "resume_command"]

HOLD = 60  # seconds the first answer may wait for a decision (the service's longest long poll)
INTERRUPT_KIND = "countersign_approval"  # marks our interrupt payloads among a graph's other interrupts

Mode = Literal["wait", "interrupt"]


def _undecided(request: ApprovalRequest, tool: str, timeout: float | None) -> str:
    waited = "the wait" if timeout is None else f"{timeout:g} s"
    return (
        f"No decision within {waited}, so {tool} was not run and the request was withdrawn "
        f"(Countersign request {request.id})."
    )


def resume_command(request: ApprovalRequest, interrupts: Sequence[Interrupt] | None = None) -> Command[Any]:
    """The ``Command`` that resumes a graph paused on ``request`` (e.g. from ``parse_callback``).

    Pass the graph's pending interrupts (``graph.get_state(config).interrupts``) to address the one that
    waits for this request: needed when several tool calls wait at once. The value only wakes the tool:
    it reads the decision from Countersign itself, so a stale or forged resume value cannot approve.
    """
    value = dict(request.raw)
    if interrupts is None:
        return Command(resume=value)
    for pending in interrupts:
        payload = pending.value
        if (
            isinstance(payload, Mapping)
            and payload.get("kind") == INTERRUPT_KIND
            and payload.get("request_id") == request.id
        ):
            return Command(resume={pending.id: value})
    raise LookupError(f"no pending interrupt waits for Countersign request {request.id}")


@dataclass(frozen=True)
class _Call:
    """One invocation of the tool: the input as given, and the params Countersign sees."""

    input: str | dict[str, Any]
    call_id: str | None
    params: dict[str, Any]

    @classmethod
    def of(cls, raw: str | dict[str, Any] | Any, visible: frozenset[str] | None) -> _Call:
        if isinstance(raw, dict) and raw.get("type") == "tool_call":
            args = dict(raw.get("args") or {})
            # Injected args (graph state, store, runtime) are the graph's, not the model's: never sent.
            params = {k: v for k, v in args.items() if visible is None or k in visible}
            return cls(raw, raw.get("id"), _jsonable(params))
        if isinstance(raw, dict):
            return cls(raw, None, _jsonable({k: v for k, v in raw.items() if visible is None or k in visible}))
        return cls(str(raw), None, {"input": str(raw)})

    def with_params(self, edited: Mapping[str, Any] | None) -> str | dict[str, Any]:
        """The input to run the tool with: the reviewer's edited params over the model's."""
        if edited is None:
            return self.input
        if isinstance(self.input, str):
            return str(edited.get("input", self.input))
        if self.input.get("type") == "tool_call":
            return {**self.input, "args": {**dict(self.input.get("args") or {}), **edited}}
        return {**self.input, **edited}

    def answer(self, text: str, tool: str) -> ToolMessage | str:
        # Invoked with a ToolCall (as ToolNode does), a tool returns a ToolMessage; so does the refusal.
        if self.call_id is None:
            return text
        return ToolMessage(content=text, tool_call_id=self.call_id, name=tool, status="error")


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    # Models send JSON, but a caller may pass pydantic models or dates: Countersign takes JSON only.
    result: dict[str, Any] = json.loads(json.dumps(dict(params), default=_plain))
    return result


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _visible_args(tool: BaseTool) -> frozenset[str] | None:
    schema = tool.tool_call_schema  # what the model sees: injected args are left out
    if isinstance(schema, dict):
        return frozenset(schema.get("properties", {}))
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return frozenset(schema.model_fields)
    return None


def _stable_key(config: RunnableConfig | None, call: _Call, action: str) -> str:
    """An idempotency key the same for the first run and the replay after ``interrupt()``.

    LangGraph re-runs a resumed node from its start: asking again with the same key finds the same
    request (no second card). The thread, the task and the tool call id keep other calls apart.
    """
    conf = (config or {}).get("configurable") or {}
    seed = [conf.get("thread_id"), conf.get("checkpoint_ns"), call.call_id, action, call.params]
    return "lg-" + hashlib.sha256(json.dumps(seed, sort_keys=True, default=str).encode()).hexdigest()[:48]


def _payload(request: ApprovalRequest, call: _Call, tool: str) -> dict[str, Any]:
    return {
        "kind": INTERRUPT_KIND,
        "request_id": request.id,
        "action": request.action,
        "tool": tool,
        "tool_call_id": call.call_id,
        "params": call.params,
        "status": request.status,
        "mode": request.mode,
        "pool": request.pool,
    }


def _edited(request: ApprovalRequest) -> dict[str, Any] | None:
    return request.decision.params if request.decision is not None else None


class GatedTool(BaseTool):
    """A tool that asks Countersign before each call; build it with ``gated()``."""

    tool: BaseTool
    client: Countersign | AsyncCountersign
    action: str
    context: dict[str, Any] | None = None
    mode: Mode = "wait"
    timeout: float | None = None  # mode "wait": give up on a human after this long (None: the manifest's)
    callback_url: str | None = None  # where the service POSTs the decision of an async (blocking: false) action

    def _run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - invoke/ainvoke are overridden
        raise NotImplementedError("GatedTool runs through invoke() / ainvoke()")

    # BaseTool.invoke parses the input before _run sees it; the raw ToolCall is needed instead, for its
    # id (the tool message, the idempotency key) and the model's JSON args (what the reviewer sees).
    def invoke(self, input: str | dict[str, Any] | Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        client = self.client
        if not isinstance(client, Countersign):
            raise TypeError("a GatedTool with an AsyncCountersign client runs with ainvoke(); pass a Countersign")
        call = _Call.of(input, _visible_args(self.tool))
        if self.mode == "interrupt":
            decided = self._interrupting(client, call, config)
        else:
            request = client.request(self.action, call.params, **self._ask(), wait=HOLD)
            if _runs_now(request):
                return self.tool.invoke(call.input, config, **kwargs)
            try:
                decided = request if request.final else client.wait_for_decision(request, timeout=self.timeout)
            except StillPending as still:
                _withdraw(client, still.request)
                return call.answer(_undecided(still.request, self.name, self.timeout), self.name)
        if not decided.approved:
            return call.answer(refusal(decided, self.name), self.name)
        return self.tool.invoke(call.with_params(_edited(decided)), config, **kwargs)

    async def ainvoke(
        self, input: str | dict[str, Any] | Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        client = self.client
        if isinstance(client, Countersign):  # a sync client still works, off the event loop
            return await asyncio.to_thread(self.invoke, input, config, **kwargs)
        call = _Call.of(input, _visible_args(self.tool))
        if self.mode == "interrupt":
            decided = await self._ainterrupting(client, call, config)
        else:
            request = await client.request(self.action, call.params, **self._ask(), wait=HOLD)
            if _runs_now(request):
                return await self.tool.ainvoke(call.input, config, **kwargs)
            try:
                decided = request if request.final else await client.wait_for_decision(request, timeout=self.timeout)
            except StillPending as still:
                await _awithdraw(client, still.request)
                return call.answer(_undecided(still.request, self.name, self.timeout), self.name)
        if not decided.approved:
            return call.answer(refusal(decided, self.name), self.name)
        return await self.tool.ainvoke(call.with_params(_edited(decided)), config, **kwargs)

    def _ask(self) -> dict[str, Any]:
        return {"context": self.context, "callback_url": self.callback_url}

    # mode "interrupt": the decision is always read from Countersign; the resume value only says "look
    # again". A premature resume (still pending) pauses the graph once more.
    def _interrupting(self, client: Countersign, call: _Call, config: RunnableConfig | None) -> ApprovalRequest:
        request = client.request(
            self.action, call.params, **self._ask(), idempotency_key=_stable_key(config, call, self.action)
        )
        while request.pending:
            interrupt(_payload(request, call, self.name))
            request = client.get(request.id)
        return request

    async def _ainterrupting(
        self, client: AsyncCountersign, call: _Call, config: RunnableConfig | None
    ) -> ApprovalRequest:
        key = _stable_key(config, call, self.action)
        request = await client.request(self.action, call.params, **self._ask(), idempotency_key=key)
        while request.pending:
            interrupt(_payload(request, call, self.name))
            request = await client.get(request.id)
        return request


def _runs_now(request: ApprovalRequest) -> bool:
    # As require_approval: the manifest made this action non-blocking (async) or reviewed after the fact.
    return request.pending and request.mode in ("async", "sample")


def _withdraw(client: Countersign, request: ApprovalRequest) -> None:
    # The tool will not run: cancel, so no reviewer approves something that will never happen.
    with contextlib.suppress(CountersignError):  # best effort: the card then expires with the manifest's timeout
        client.cancel(request.id)


async def _awithdraw(client: AsyncCountersign, request: ApprovalRequest) -> None:
    with contextlib.suppress(CountersignError):
        await client.cancel(request.id)


def gated(
    tool: BaseTool,
    client: Countersign | AsyncCountersign,
    action: str | None = None,
    *,
    context: Mapping[str, Any] | None = None,
    mode: Mode = "wait",
    timeout: float | None = None,
    callback_url: str | None = None,
) -> GatedTool:
    """``tool`` behind Countersign: same name, description and args schema; ``action`` defaults to its name.

    Use ``Countersign`` for ``invoke`` (sync graphs) and ``AsyncCountersign`` for ``ainvoke``. Errors
    reaching Countersign raise (the tool does not run): fail closed, not silently open.
    """
    if mode not in ("wait", "interrupt"):
        raise ValueError(f"mode must be 'wait' or 'interrupt', not {mode!r}")
    return GatedTool(
        name=tool.name,
        description=tool.description,
        args_schema=cast(Any, tool.args_schema),
        return_direct=tool.return_direct,
        tool=tool,
        client=client,
        action=action or tool.name,
        context=dict(context) if context else None,
        mode=mode,
        timeout=timeout,
        callback_url=callback_url,
    )
