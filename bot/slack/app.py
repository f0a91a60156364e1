"""Building the Bolt app: signature verification on, one error handler, the listeners attached.

The app also audits the Slack requests it refuses (see :mod:`bot.slack.refusals`): Bolt has no
hook for a failed signature check, so :class:`CountersignApp` looks at Bolt's answer instead:
a 401 is a signature Bolt refused (which one is worked out again here), a 400 a signed body of
a shape Slack never sends, a 404 a signed request no listener takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.service import CommandService
from bot.home.service import HomeService
from bot.ids import ActionId, CallbackId
from bot.metrics import OTHER, Metrics
from bot.service.policychanges import PolicyChanges
from bot.service.questions import Questions
from bot.slack import bulk as bulk_approval
from bot.slack import commands, listeners
from bot.slack import edits as edit_flow
from bot.slack import home as home_tab
from bot.slack import policychanges as policy_change_buttons
from bot.slack import policyform as policy_form
from bot.slack import questions as question_cards
from bot.slack import reveal as reveal_button
from bot.slack.formbody import SlashCommandBody
from bot.slack.ports import ReviewService
from bot.slack.refusals import Reason, RefusalLog, RefusedRequest, first_values, signature_problem

log = logging.getLogger(__name__)

# Bolt's answers that mean "refused, not acted on", and why (a 401's reason is refined below).
REFUSALS = {401: Reason.INVALID_SIGNATURE, 400: Reason.MALFORMED_BODY, 404: Reason.UNHANDLED}
# The interactions timed from arrival to ack; any other action or view is "other".
INTERACTIONS = frozenset(ActionId) | frozenset(CallbackId)


def interaction(body: object) -> str | None:
    """A click's action id or a submitted modal's callback id (bounded); None for anything else."""
    if not isinstance(body, dict) or body.get("type") not in ("block_actions", "view_submission"):
        return None
    try:
        name = body["actions"][0]["action_id"] if body["type"] == "block_actions" else body["view"]["callback_id"]
        return str(name) if name in INTERACTIONS else OTHER
    except (KeyError, IndexError, TypeError):  # TypeError: a shape Slack never sends (unhashable, not indexable)
        return OTHER


class CountersignApp(AsyncApp):
    """Bolt's app, auditing what it refuses in ``refusals`` (flushed by the web server's cleanup)."""

    def __init__(
        self, *, refusals: RefusalLog, signing_secret: str, metrics: Metrics | None = None, **kwargs: Any
    ) -> None:
        super().__init__(signing_secret=signing_secret, **kwargs)
        self.refusals = refusals
        self.metrics = metrics
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None

    @property
    def verifies_requests(self) -> bool:
        """Whether HTTP requests can be checked at all: without a signing secret (Socket Mode) they cannot."""
        return self._verifier is not None

    def signature_problem(self, raw_body: str | bytes, headers: Mapping[str, str]) -> Reason | None:
        """Why the signature does not hold; None when it does or when there is no secret (Socket Mode)."""
        if self._verifier is None:
            return None
        return signature_problem(self._verifier, raw_body, headers)

    def refuse_unreadable(self, raw_body: bytes, headers: Mapping[str, str]) -> None:
        """Audit a body Bolt could not even parse: as not from Slack if unsigned, else as unreadable."""
        reason = self.signature_problem(raw_body, headers) or Reason.UNREADABLE_BODY
        self.refusals.record(reason, RefusedRequest.of(raw_body, headers, None))

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        loop = asyncio.get_running_loop()
        received = loop.time()
        # Bolt returns as soon as the listener acks (it works on after): this is click to ack, in either mode.
        response = await super().async_dispatch(req)
        if self.metrics is not None and response.status < 400 and (action := interaction(req.body)) is not None:
            self.metrics.acked(action, loop.time() - received)
        if req.mode == "http" and (reason := REFUSALS.get(response.status)) is not None:
            headers = first_values(req.headers)
            if response.status == 401:
                reason = self.signature_problem(req.raw_body, headers) or reason
            body = req.body if isinstance(req.body, dict) else None
            self.refusals.record(reason, RefusedRequest.of(req.raw_body, headers, body))
        return response


def build_bolt_app(
    *,
    client: AsyncWebClient,
    signing_secret: str,
    service: ReviewService,
    hitl: CommandService,
    home: HomeService,
    refusals: RefusalLog | None = None,
    metrics: Metrics | None = None,
    reveals: reveal_button.RevealService | None = None,
    bulk: bulk_approval.BulkService | None = None,
    questions: Questions | None = None,
    edits: edit_flow.EditService | None = None,
    policy_changes: PolicyChanges | None = None,
) -> CountersignApp:
    """The Bolt app. ``client`` carries the bot token and the Web API base URL (an emulator's, in tests).

    ``service`` takes the cards' clicks and modals, ``hitl`` serves ``/hitl`` and ``home`` the App
    Home. ``refusals`` records refused requests; by default through
    ``service.audit_refused_slack_request``, a minute apart.
    """

    async def audit(reason: str, detail: dict[str, Any]) -> None:
        await service.audit_refused_slack_request(reason=reason, detail=detail)

    refusals = refusals or RefusalLog(audit)
    app = CountersignApp(
        refusals=refusals,
        metrics=metrics,
        client=client,
        signing_secret=signing_secret,
        # Slack retries an unanswered request after 3 s; we ack first and work after, never blocking the ack.
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        # After the signature check, before anything reads the body: "payload" in a command's text.
        before_authorize=SlashCommandBody(),
        # Bolt copies its base logger's level onto each logger it makes; without one it copies the root's
        # (INFO), and its signature check logs a refused request's whole body and signature at INFO. Its
        # own logger takes the level `countersign serve` gives the libraries (WARNING unless asked).
        logger=logging.getLogger("slack_bolt"),
    )

    def unverified(request: AsyncBoltRequest) -> bool:
        """An HTTP request whose signature does not hold (Bolt's check raises on a non-numeric timestamp)."""
        if request.mode != "http":
            return False
        return app.signature_problem(request.raw_body, first_values(request.headers)) is not None

    @app.error
    async def on_error(
        error: Exception,
        body: dict[str, Any],
        respond: AsyncRespond | None,
        request: AsyncBoltRequest,
        response: BoltResponse,
    ) -> None:
        # Only failures outside our listeners get here (they report their own): middleware, parsing by Bolt.
        if unverified(request):
            # Never act on a body nobody vouched for, not even to post an error to its response_url.
            log.warning("refused Slack request: bad signature headers (%s)", type(error).__name__)
            response.status, response.body = 401, ""
            return
        await listeners.report_error(error, body, respond, client)

    if bulk is not None:
        bulk_approval.register(app, bulk)
    if questions is not None:
        question_cards.register(app, questions)
    if reveals is not None:
        reveal_button.register(app, reveals)
    if edits is not None:
        edit_flow.register(app, edits)
    if policy_changes is not None:
        policy_change_buttons.register(app, policy_changes)
        policy_form.register(app, policy_changes)
    listeners.register(app, service)
    commands.register(app, hitl)
    home_tab.register(app, home)
    listeners.register_unknown(app, refusals)  # last: it takes any action no listener above matched
    return app
