"""Every Slack Web API call timed and its errors counted, at the one place all of them pass: the session.

The outbox's calls go through :class:`bot.outbox.slackcalls.SlackCalls`, but Bolt's listeners (and App
Home refreshes) call the client directly, and Bolt builds a client per request. All of them share the
runtime's Slack session, so a trace on that session sees each attempt (a retried call counts twice):
its duration, and Slack's answer when it is an error (``ok: false``, an HTTP error status, or no
answer at all). The method label is the last path segment of the URL (``chat.postMessage``): the
methods this code calls, a bounded set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import aiohttp
from aiohttp import TraceRequestEndParams, TraceRequestExceptionParams, TraceRequestStartParams
from yarl import URL

from bot.metrics import Metrics

log = logging.getLogger(__name__)


def _method(url: URL) -> str:
    return url.path.rstrip("/").rsplit("/", 1)[-1] or "unknown"


async def _error_of(response: aiohttp.ClientResponse) -> str | None:
    """Slack's error code for this answer, or None when it is a success. Reads the body, which aiohttp
    keeps, so slack_sdk's own read after this one gets the same bytes."""
    try:
        body = await response.read()
    except aiohttp.ClientError:
        body = b""
    # Parsed only when it can hold an error: most answers are large successes that slack_sdk parses anyway.
    answer = None
    if response.status >= 400 or b'"ok":false' in body.replace(b" ", b""):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
    if isinstance(answer, dict) and answer.get("ok") is False:
        return str(answer.get("error") or "unknown")
    if response.status >= 400:
        return f"http_{response.status // 100}xx"
    return None


def slack_call_trace(metrics: Metrics) -> aiohttp.TraceConfig:
    """A trace for the Slack session: ``countersign_slack_api_call_duration_seconds`` and
    ``countersign_slack_api_errors_total`` by method. A failure in here never fails the call."""
    trace = aiohttp.TraceConfig()

    async def started(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        context.started = asyncio.get_running_loop().time()

    async def ended(session: aiohttp.ClientSession, context: SimpleNamespace, params: TraceRequestEndParams) -> None:
        try:
            method = _method(params.url)
            error = await _error_of(params.response)
            metrics.slack_call(method, asyncio.get_running_loop().time() - context.started)
            if error is not None:
                metrics.slack_error(method, error)
        except Exception:  # metrics must never cost a delivery
            log.exception("could not time a Slack call")

    async def failed(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        method = _method(params.url)
        metrics.slack_call(method, asyncio.get_running_loop().time() - context.started)
        metrics.slack_error(method, "timeout" if isinstance(params.exception, TimeoutError) else "connection")

    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(failed)
    return trace
