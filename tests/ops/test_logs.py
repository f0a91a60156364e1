"""Structured logs: one JSON object a line, naming the tenant and request a line is about."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import ContextFilter, JsonFormatter
from tests.e2e.conftest import FAST_RETRY, TIER1, Stack, refund


class Lines(logging.Handler):
    """The root logger's output as ``countersign serve`` formats it with COUNTERSIGN_LOG_JSON=1."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(ContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def test_a_failed_card_post_is_logged_with_its_tenant_and_request(stack: Stack, lines: Lines) -> None:
    stack.runtime.worker.retry = FAST_RETRY
    stack.slack.fail_next("chat.postMessage", error="internal_error", status=500, times=1)
    status, body = await stack.agent().ask("process_refund", refund("L-1"))
    assert status == 202, body
    await stack.slack.wait_for_message(TIER1, text="L-1")  # posted on the retry
    failed = [line for line in lines.lines if "failed" in str(line["message"]) and line["level"] == "warning"]
    assert failed, lines.lines
    assert failed[0]["tenant"] == "acme-support" and failed[0]["request_id"] == body["id"]
