"""Building the Bolt app: signature verification on, one error handler, the listeners attached."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.service import CommandService
from bot.slack import commands, home, listeners
from bot.slack.formbody import SlashCommandBody
from bot.slack.ports import ReviewService

log = logging.getLogger(__name__)


def build_bolt_app(
    *, client: AsyncWebClient, signing_secret: str, service: ReviewService, hitl: CommandService | None = None
) -> AsyncApp:
    """The Bolt app. ``client`` carries the bot token and the Web API base URL (an emulator's, in tests).

    ``hitl`` serves ``/hitl`` and the App Home; by default it is built from ``service``'s database,
    manifests and clock (a stand-in service without them gets no ``/hitl``).
    """
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        # Slack retries an unanswered request after 3 s; we ack first and work after, never blocking the ack.
        process_before_response=False,
        raise_error_for_unhandled_request=False,
        # After the signature check, before anything reads the body: "payload" in a command's text.
        before_authorize=SlashCommandBody(),
    )

    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    def unverified(request: AsyncBoltRequest) -> bool:
        """An HTTP request whose signature does not hold (Bolt's check raises on a non-numeric timestamp)."""
        if request.mode != "http" or verifier is None:
            return False
        headers = {name: values[0] for name, values in request.headers.items() if values}
        try:
            return not verifier.is_valid_request(request.raw_body, headers)
        except (ValueError, TypeError):
            return True

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

    listeners.register(app, service)
    if (hitl := hitl or CommandService.of(service)) is not None:
        commands.register(app, hitl)
        home.register(app, hitl)
    return app
