"""The audit log on the request path, through the real service: a request's transaction inserts its
events and never touches a chain head; the running service's sequencer seals them soon after."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from store.audit import verify
from tests.e2e.conftest import Stack, eventually, refund


async def test_an_auto_approved_request_touches_no_chain_head_and_is_sealed_soon(stack: Stack) -> None:
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        task = asyncio.current_task()
        if task is None or task.get_name() != "audit-sequencer":  # the sequencer's own statements aside
            sent.append(statement)

    engine = stack.runtime.engine
    before = (await verify(engine, "acme-support")).events
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        status, body = await stack.agent().ask("process_refund", {**refund("W-1"), "amount": 5})
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert (status, body["status"]) == (200, "auto_approved")
    assert any(s.lstrip().upper().startswith("INSERT INTO AUDIT_UNSEALED") for s in sent), sent
    assert not [s for s in sent if "audit_head" in s or "audit_event" in s]

    async def sealed() -> bool:
        result = await verify(engine, "acme-support")
        return result.ok and result.unsealed == 0 and result.events > before

    await eventually(sealed, what="the request's events sealed by the running sequencer", timeout=5)
    trail = await stack.audit("acme-support", body["id"])
    assert [r.kind for r in trail][:1] == ["request.created"] and all(r.sealed for r in trail)
