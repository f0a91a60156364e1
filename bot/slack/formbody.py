"""Slash-command bodies that mention "payload", read correctly.

Bolt's ``parse_body`` looks for the substring ``payload`` in the raw form body to tell an
interaction (``payload=<json>``) from a slash command; a command whose text (or channel or
user name) merely contains the word — ``/hitl pool add payload_team <@U…>`` — comes out as
``{}``, no listener matches and Slack shows the person a 404. This middleware runs right
after Bolt has verified the signature over the raw body (and before authorization, which
reads the team and user from the body) and parses such a body as the form it is.

Lazy listeners get a copy of the request that Bolt parses again from the raw body; the
``/hitl`` listener is not lazy, so this one pass is enough.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"


def reparse_form_body(req: AsyncBoltRequest) -> bool:
    """Fix ``req.body`` when Bolt mis-parsed a slash command; True if it did."""
    if req.mode != "http" or req.body or not req.raw_body or req.raw_body.startswith("{"):
        return False
    if req.content_type is not None and req.content_type != FORM:
        return False
    form = dict(parse_qsl(req.raw_body, keep_blank_values=True))
    if "payload" in form or "command" not in form:
        return False  # a real interaction payload that is broken stays Bolt's to refuse
    req.body = form
    # Helpers Bolt already built from the empty body (respond without a response_url...) go too.
    for helper in ("respond", "say"):
        req.context.pop(helper, None)
    req.context = build_async_context(req.context, form)
    return True


def malformed(req: AsyncBoltRequest) -> str | None:
    """Why a verified body is one Slack never sends and Bolt cannot handle, or None.

    Bolt indexes ``actions[0]`` (and friends) while building the arguments of every custom
    middleware and error handler: a block action without actions crashes it (HTTP 500).
    """
    body = req.body
    if not isinstance(body, dict):
        return "the body is not an object"
    if body.get("type") == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            return "a block action without actions"
    return None


class SlashCommandBody(AsyncMiddleware):
    """Bolt ``before_authorize`` middleware: see the module docstring; also refuses malformed bodies (400).

    A middleware object, not a function: Bolt calls it as is, without first building the
    arguments a function middleware would get (which is what crashes on a malformed body).
    """

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        reparse_form_body(req)
        if (problem := malformed(req)) is not None:
            log.warning("refused Slack request: %s", problem)
            return BoltResponse(status=400, body="")
        return await next()
