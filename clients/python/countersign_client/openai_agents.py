"""OpenAI Agents SDK: Countersign decides tool approvals (``pip install 'countersign-client[openai-agents]'``).

    approvals = CountersignApprovals(AsyncCountersign())
    refund = approvals.gate(function_tool(process_refund), action="process_refund")
    result = await Runner.run(agent, "refund order A-1")
    while result.interruptions:                        # Countersign did not approve at once
        state = await approvals.resolve(result)        # waits for the humans, approves / rejects each call
        result = await Runner.run(agent, state)

Each call of a gated tool is asked of Countersign (the SDK's ``needs_approval`` callable). Approved at
once (e.g. auto-approved by the manifest): the tool runs. Otherwise the run stops with an interruption
and ``resolve`` waits for the decision, then calls the SDK's ``approve`` or ``reject``; a rejection
reaches the model as the tool's output, ``"Rejected by <who>: <reason> ..."``.

The SDK cannot approve a call with other arguments (openai-agents-js #1097 asks for it). When a
reviewer approves with edited params, the call is rejected with a message giving the approved
arguments, and the model's next call with exactly those runs without asking again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents import FunctionTool, RunContextWrapper, RunResult, RunState, ToolApprovalItem

from countersign_client.client import AsyncCountersign
from countersign_client.errors import StillPending
from countersign_client.models import ApprovalRequest
from countersign_client.words import refusal

__all__ = ["CountersignApprovals", "refusal"]


def _canonical(action: str, params: Mapping[str, Any]) -> str:
    return json.dumps([action, params], sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class _Asked:
    action: str
    params: dict[str, Any]
    request: ApprovalRequest


class _NeedsApproval:
    """The SDK's ``needs_approval(run_context, params, call_id)`` for one action."""

    def __init__(self, owner: CountersignApprovals, action: str) -> None:
        self.owner = owner
        self.action = action

    async def __call__(self, run_context: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        return await self.owner._needs_approval(self.action, params, call_id)


class CountersignApprovals:
    """Asks Countersign about gated tool calls, and settles the run's interruptions with its decisions.

    ``timeout`` bounds how long ``resolve`` waits for a human (calls still pending are left
    interrupted); ``None`` waits until Countersign decides (the manifest's timeout ends every wait).
    """

    def __init__(
        self, client: AsyncCountersign, *, context: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> None:
        self.client = client
        self.context = dict(context) if context else None
        self.timeout = timeout
        self._asked: dict[str, _Asked] = {}  # by the SDK's call id
        self._approved_edits: list[str] = []  # reviewer-approved (action, params), run once without asking

    def needs_approval(self, action: str) -> _NeedsApproval:
        """A ``needs_approval=`` value for ``function_tool``: asks Countersign as ``action``."""
        return _NeedsApproval(self, action)

    def gate(self, tool: FunctionTool, action: str | None = None) -> FunctionTool:
        """Set ``tool.needs_approval`` to ask Countersign (``action`` defaults to the tool's name)."""
        tool.needs_approval = self.needs_approval(action or tool.name)
        return tool

    async def _needs_approval(self, action: str, params: dict[str, Any], call_id: str) -> bool:
        canonical = _canonical(action, params)
        if canonical in self._approved_edits:
            self._approved_edits.remove(canonical)
            return False
        # The same key for the same call: asking again (a resumed run re-checks) finds the same request.
        key = "oa-" + hashlib.sha256(f"{call_id}\n{canonical}".encode()).hexdigest()[:48]
        request = await self.client.request(action, params, context=self.context, idempotency_key=key)
        self._asked[call_id] = _Asked(action, params, request)
        if request.pending:
            # As require_approval: an async (blocking: false) or sampled action runs at once.
            return request.mode not in ("async", "sample")
        return not (request.approved and _edits(request, params) is None)

    async def resolve(self, interrupted: RunResult | RunState[Any, Any]) -> RunState[Any, Any]:
        """Approve or reject each interruption this object asked about, as Countersign decided.

        Returns the state to pass to ``Runner.run``. Interruptions of other tools, and calls still
        pending after ``timeout``, are left as they are.
        """
        if isinstance(interrupted, RunState):
            state, items = interrupted, interrupted.get_interruptions()
        else:
            state, items = interrupted.to_state(), list(interrupted.interruptions)
        for item in items:
            asked = self._asked.get(item.call_id or "")
            if asked is None:
                continue
            request = asked.request
            if not request.final:
                try:
                    request = await self.client.wait_for_decision(request, timeout=self.timeout)
                except StillPending:
                    continue
            self._settle(state, item, asked, request)
        return state

    def _settle(
        self, state: RunState[Any, Any], item: ToolApprovalItem, asked: _Asked, request: ApprovalRequest
    ) -> None:
        tool = item.name or asked.action
        if not request.approved:
            state.reject(item, rejection_message=refusal(request, tool))
            return
        edited = _edits(request, asked.params)
        if edited is None:
            state.approve(item)
            return
        self._approved_edits.append(_canonical(asked.action, edited))
        by = request.decision.by if request.decision is not None else None
        state.reject(
            item,
            rejection_message=(
                f"Approved by {by or 'a reviewer'} only with these arguments: {json.dumps(edited, sort_keys=True)}. "
                f"{tool} was not run; call it again with exactly these arguments to run it."
            ),
        )


def _edits(request: ApprovalRequest, params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The reviewer's params when they differ from the call's, else None."""
    edited = request.decision.params if request.decision is not None else None
    if edited is None or edited == dict(params):
        return None
    return {**dict(params), **edited}
