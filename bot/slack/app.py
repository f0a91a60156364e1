"""Building the Bolt app: signature verification on, one error handler, the listeners attached."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks
from bot.errors import BotError
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
        if isinstance(error, BotError):
            text = error.user_message
            log.info("refused Slack request: %s", text)
        else:
            ref = uuid.uuid4().hex[:8]
            log.exception("error handling a Slack request (ref %s)", ref, exc_info=error)
            text = blocks.SOMETHING_WENT_WRONG.format(ref=ref)
        if respond is not None and body.get("response_url"):
            await respond(text=text, response_type="ephemeral", replace_original=False)
        elif user := (body.get("user") or {}).get("id"):
            await client.chat_postMessage(channel=user, text=text)

    listeners.register(app, service)
    return app
