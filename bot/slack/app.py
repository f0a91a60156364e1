"""Building the Bolt app: signature verification on, one error handler, the listeners attached."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import listeners
from bot.slack.ports import ReviewService

log = logging.getLogger(__name__)


def build_bolt_app(*, client: AsyncWebClient, signing_secret: str, service: ReviewService) -> AsyncApp:
    """The Bolt app. ``client`` carries the bot token and the Web API base URL (an emulator's, in tests)."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        # Slack retries an unanswered request after 3 s; we ack first and work after, never blocking the ack.
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        # Only failures outside our listeners get here (they report their own): middleware, parsing by Bolt.
        await listeners.report_error(error, body, respond, client)

    listeners.register(app, service)
    return app
