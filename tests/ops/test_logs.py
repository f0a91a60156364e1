"""Structured logs: one JSON object a line, naming the tenant and request a line is about."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot import logs
from bot.logs import ContextFilter, JsonFormatter, log_context
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import running_emulator
from bot.service.deadlines import Fired
from tests.e2e.conftest import FAST_RETRY, MANIFESTS, TIER1, Stack, refund, settings_for


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


@contextlib.contextmanager
def served_logs(*, json_lines: bool = False) -> Iterator[io.StringIO]:
    """What ``countersign serve`` prints: logging set up as it does (``logs.configure``, libraries at the
    default WARNING), its output read back, the test process's logging restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.LIBRARIES}
    out = io.StringIO()
    try:
        logs.configure(json_lines=json_lines)
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        yield out
    finally:
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)


def test_a_line_outside_any_request_names_no_scope_not_none() -> None:
    log = logging.getLogger("bot.test")
    with served_logs() as out:
        log.info("countersign serving on http://127.0.0.1:3000")
        with log_context(tenant="acme-support"):
            log.info("manifest reloaded")
            with log_context(request_id="r-17"):
                log.warning("card post failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].endswith(" INFO bot.test countersign serving on http://127.0.0.1:3000"), lines
    assert lines[1].endswith(" INFO bot.test [acme-support] manifest reloaded"), lines
    assert lines[2].endswith(" WARNING bot.test [acme-support r-17] card post failed"), lines
    assert "None" not in out.getvalue() and "[]" not in out.getvalue()


async def test_the_deadline_sweep_logs_nothing_from_apscheduler(db_url: str) -> None:
    """APScheduler logs every job it runs at INFO (every 15 s, the sweep): held at WARNING with the other
    libraries, a service left idle prints nothing however many times the sweep wakes."""
    with served_logs() as out:
        async with running_emulator(EmulatorConfig(), load_seed(MANIFESTS)) as emu:
            settings = settings_for(emu, db_url).model_copy(update={"sweep_every": timedelta(milliseconds=200)})
            runtime = await Runtime.build(settings)
            sweeps = 0
            run_due = runtime.keeper.run_due

            async def counted(*, batch: int | None = None) -> list[Fired]:
                nonlocal sweeps
                sweeps += 1
                return await run_due(batch=batch)

            runtime.keeper.run_due = counted  # type: ignore[method-assign]
            try:
                await runtime.start(host="127.0.0.1", port=0)
                for _ in range(300):  # three wake-ups of the sweep (one at the start): about 0.4 s
                    if sweeps >= 3:
                        break
                    await asyncio.sleep(0.01)
            finally:
                await runtime.stop()
    assert sweeps >= 3
    assert "INFO bot.runtime countersign serving on" in out.getvalue()  # our own INFO lines still show
    assert " INFO apscheduler" not in out.getvalue(), out.getvalue()  # not "Running job ..." at each wake-up
