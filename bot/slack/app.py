"""Building the Bolt app: signature verification on, one error handler, the listeners attached."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands.service import CommandService
from bot.slack import commands, home, listeners
from bot.slack.formbody import slash_command_body
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
        before_authorize=slash_command_body,
    )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: AsyncRespond | None) -> None:
        # Only failures outside our listeners get here (they report their own): middleware, parsing by Bolt.
        await listeners.report_error(error, body, respond, client)

    listeners.register(app, service)
    if (hitl := hitl or CommandService.of(service)) is not None:
        commands.register(app, hitl)
        home.register(app, hitl)
    return app
