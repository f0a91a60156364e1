"""Claude Code's ``PreToolUse`` hook over the agent API: ``POST /v1/hooks/claude-code`` (docs/claude-code.md).

Claude Code posts its hook input (``session_id``, ``cwd``, ``tool_name``, ``tool_input``, ...); the call
becomes the agent API's ask, with the tool's name as the action and its input as the params, so a
manifest decides ``Bash`` as it decides any action. The answer is Claude Code's hook output:
``allow``, ``deny`` (with the reviewer's or the policy's reason) or, still pending at the bound,
the configured ``deny`` or ``ask``.

One tool call is one request: its idempotency key is derived from the session and the tool call's
id, so the same call asked again (a retrying hook, a proxy) finds its request, not a second card.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import InvalidRequest
from bot.service.models import ContextIn, CreateRequest, RequestOut
from bot.waiters import MAX_WAIT, parse_prefer_wait
from policy import Mode, Status, canonical_sha256

EVENT = "PreToolUse"
SOURCE = "claude-code"
# Seconds a call waits for a reviewer when neither ?wait= nor Prefer: wait= says. Below the timeout
# Claude Code gives a hook (60 s in older releases, 600 s for command hooks now) with room to answer,
# and the service caps any wait at MAX_WAIT (60 s) anyway.
DEFAULT_WAIT = 50
# What the hook output names as the fields of the agent API's body it was mapped to.
_FIELDS = {"action": "tool_name", "params": "tool_input"}

Decision = Literal["allow", "deny", "ask"]


class OnPending(StrEnum):
    """What a call still pending at its bound answers: ``deny`` (fail closed) or ``ask`` the person at the terminal."""

    DENY = "deny"
    ASK = "ask"


class HookInput(BaseModel):
    """Claude Code's ``PreToolUse`` hook input. Fields Claude Code adds (``transcript_path``,
    ``permission_mode``, ...) are accepted and not used."""

    model_config = ConfigDict(extra="allow")

    session_id: str = Field(min_length=1, max_length=1000)
    hook_event_name: Literal["PreToolUse"]
    tool_name: str = Field(min_length=1)
    tool_input: dict[str, Any]
    tool_use_id: str | None = Field(default=None, max_length=1000)
    cwd: str | None = Field(default=None, max_length=4096)


@dataclass(frozen=True, slots=True)
class HookOptions:
    """How long to wait for a reviewer, and what to answer if none decided by then."""

    wait: int = DEFAULT_WAIT
    on_pending: OnPending = OnPending.DENY


@dataclass(frozen=True, slots=True)
class HookAnswer:
    decision: Decision
    reason: str
    request_id: str | None = None
    status: Status | None = None

    def output(self) -> dict[str, Any]:
        """Claude Code's hook output for ``PreToolUse``."""
        return {
            "hookSpecificOutput": {
                "hookEventName": EVENT,
                "permissionDecision": self.decision,
                "permissionDecisionReason": self.reason,
            }
        }

    error: str | None = None  # the API's error code, when the call itself was refused

    def headers(self) -> dict[str, str]:
        """The request behind the answer, for a hook that asks again while it is pending, and for logs."""
        found = {
            "Countersign-Request-Id": self.request_id,
            "Countersign-Request-Status": self.status,
            "Countersign-Error": self.error,
        }
        return {k: str(v) for k, v in found.items() if v is not None}


def refusal(status: int, code: str, message: str, field: str | None = None) -> HookAnswer:
    """The answer to a hook call the API refused: a deny that says why, so the tool does not run."""
    where = f" in {field}" if field else ""
    reason = f"Countersign refused this hook call ({status} {code}{where}: {message}); the tool was not run"
    return HookAnswer("deny", reason, error=code)


def options(query: Mapping[str, str], prefer: str | None) -> HookOptions:
    """``?wait=N`` (else ``Prefer: wait=N``, else :data:`DEFAULT_WAIT`; capped at 60) and ``?on_pending=``.

    Raises:
        InvalidRequest: ``wait`` is not a whole number of seconds, or ``on_pending`` is neither deny nor ask.
    """
    wait = parse_prefer_wait(prefer) or DEFAULT_WAIT
    if "wait" in query:
        raw = query["wait"].strip()
        if not raw.isdecimal() or not raw.isascii():
            message = f"wait must be whole seconds from 0 to {MAX_WAIT}, not {raw[:20]!r}"
            raise InvalidRequest("invalid", message, "wait")
        wait = min(int(raw), MAX_WAIT)
    try:
        on_pending = OnPending(query.get("on_pending", OnPending.DENY.value))
    except ValueError:
        shown = query.get("on_pending", "")[:20]
        raise InvalidRequest("invalid", f"on_pending must be 'deny' or 'ask', not {shown!r}", "on_pending") from None
    return HookOptions(wait=wait, on_pending=on_pending)


def parse(data: Any) -> HookInput:
    """The hook input from a parsed JSON body.

    Raises:
        InvalidRequest: not a ``PreToolUse`` input, or not its shape (``tool_input`` must be an object).
    """
    if not isinstance(data, dict):
        raise InvalidRequest("invalid", "the body must be Claude Code's hook input, a JSON object")
    event = data.get("hook_event_name")
    if event != EVENT:
        said = f"'{event}'" if isinstance(event, str) else "no hook_event_name"
        raise InvalidRequest(
            "invalid",
            f"only {EVENT} hook input is answered here, not {said}: register this hook under hooks.{EVENT}",
            "hook_event_name",
        )
    try:
        return HookInput.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    path = [str(p) for p in first["loc"]]
    if path:
        path[0] = _FIELDS.get(path[0], path[0])
    field = ".".join(path) or None
    return InvalidRequest("invalid", f"{field}: {first['msg']}" if field else first["msg"], field)


def _fit(value: str, limit: int = 200) -> str:
    """``value`` if it fits a field of ``limit`` characters, else its digest (still one value per value)."""
    return value if len(value) <= limit else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def idempotency_key(hook: HookInput) -> str:
    """One key per tool call: the session and the call's ``tool_use_id``; without one, the session and the
    call itself (tool, input and directory), so that asking again finds the request and never conflicts."""
    call = hook.tool_use_id or canonical_sha256({"tool": hook.tool_name, "input": hook.tool_input, "cwd": hook.cwd})
    digest = hashlib.sha256(json.dumps([hook.session_id, call]).encode()).hexdigest()
    return f"{SOURCE}:{digest}"


def to_request(hook: HookInput) -> CreateRequest:
    """The agent API's body for a tool call. Nothing in it changes when the same call is asked again
    (its key with another body would be a 409).

    Raises:
        InvalidRequest: a tool name that is not an action name, or a tool input too large or deep.
    """
    where = f" in {hook.cwd}" if hook.cwd else ""
    description = hook.tool_input.get("description")  # Bash: Claude's own words on what the command does
    context = ContextIn(
        summary=f"Claude Code: {hook.tool_name}{where}"[:500],
        reason=description[:2000] if isinstance(description, str) and description.strip() else None,
        workflow_id=_fit(hook.session_id),  # a session is a workflow (max_pending counts per workflow)
        labels={"source": "claude-code", **({"cwd": hook.cwd[:500]} if hook.cwd else {})},
    )
    try:
        return CreateRequest(
            action=hook.tool_name, params=hook.tool_input, idempotency_key=idempotency_key(hook), context=context
        )
    except ValidationError as exc:
        raise _invalid(exc) from None


def answer(resource: RequestOut, opts: HookOptions) -> HookAnswer:
    """What Claude Code is told about a request, as it stands after the wait."""
    rid, status, decision = resource.id, resource.status, resource.decision
    ref = f"(Countersign request {rid})"
    reason = decision.reason if decision is not None and decision.reason else "no reason given"
    by = decision.by if decision is not None else None

    def said(verdict: Decision, text: str) -> HookAnswer:
        return HookAnswer(verdict, f"{text} {ref}", rid, status)

    if status is Status.PENDING:
        if resource.mode is not Mode.SYNC:  # blocking: false: run now, a reviewer may have it undone later
            undo = f"; if rejected, {resource.undo_operation} undoes it" if resource.undo_operation else ""
            return said("allow", f"allowed now, reviewed in Slack afterwards{undo}")
        waiting = (
            f"no reviewer has decided yet (waited {opts.wait} s). A reviewer can still decide it in Slack; "
            "this same tool call asked again finds it"
        )
        if opts.on_pending is OnPending.ASK:
            return said("ask", f"Countersign: {waiting}. Decide here whether it runs")
        return said("deny", f"Not run: Countersign approval is pending, {waiting}")
    if status is Status.AUTO_APPROVED:
        return said("allow", f"auto-approved by Countersign policy: {reason}")
    if status is Status.APPROVED:
        because = f": {reason}" if decision is not None and decision.reason else ""
        return said("allow", f"approved by {by} in Countersign{because}")
    if status is Status.EXPIRED and decision is not None and decision.outcome is Status.APPROVED:
        return said("allow", f"approved when no reviewer answered in time (the manifest's on_timeout): {reason}")
    if status is Status.DENIED:
        return said("deny", f"denied by Countersign policy: {reason}")
    if status is Status.REJECTED:
        who = "Countersign policy" if by in (None, "policy") else by
        return said("deny", f"rejected by {who}: {reason}")
    if status is Status.EXPIRED:
        return said("deny", f"rejected: no reviewer answered in time: {reason}")
    return said("deny", f"Countersign request {status.value}: {reason}")


async def ask(
    hook: HookInput,
    opts: HookOptions,
    *,
    submit: Callable[[CreateRequest], Awaitable[tuple[RequestOut, bool]]],
    wait: Callable[[str, int], Awaitable[RequestOut]],
) -> HookAnswer:
    """Submit the tool call (or find it again), wait for a sync request's decision up to the bound, answer.

    An action the tenant does not have, under ``unknown_action: deny``, is denied with the policy's words.

    Raises:
        InvalidRequest: the body cannot be a request (422), as the agent API.
        Conflict: the same tool call id came with another input (409).
    """
    body = to_request(hook)
    try:
        resource, _ = await submit(body)
    except InvalidRequest as exc:
        if exc.code != "unknown_action":
            raise
        return HookAnswer("deny", f"denied by Countersign policy: {exc.message}")
    if resource.status is Status.PENDING and resource.mode is Mode.SYNC and opts.wait:
        resource = await wait(resource.id, opts.wait)
    return answer(resource, opts)
