"""Bolt's body parsing and the word "payload": commands are re-read as forms, interactions left alone."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack.formbody import reparse_form_body

FORM = {"content-type": ["application/x-www-form-urlencoded"]}


def test_a_command_mentioning_payload_is_read_as_the_form_it_is() -> None:
    body = urlencode(
        {
            "command": "/hitl",
            "text": "pool add payload_team <@U0BEN>",
            "user_id": "U0ADA",
            "team_id": "T0",
            "response_url": "http://127.0.0.1/hooks/x",
        }
    )
    req = AsyncBoltRequest(body=body, headers=FORM)
    assert req.body == {}  # what Bolt makes of it
    assert reparse_form_body(req)
    assert req.body["text"] == "pool add payload_team <@U0BEN>"
    assert (req.context.user_id, req.context.team_id, req.context.response_url) == (
        "U0ADA",
        "T0",
        "http://127.0.0.1/hooks/x",
    )


def test_interactions_and_plain_commands_are_left_to_bolt() -> None:
    click = "payload=" + quote(json.dumps({"type": "block_actions", "user": {"id": "U1"}}))
    req = AsyncBoltRequest(body=click, headers=FORM)
    assert not reparse_form_body(req) and req.body["type"] == "block_actions"
    plain = AsyncBoltRequest(body=urlencode({"command": "/hitl", "text": "pools"}), headers=FORM)
    assert not reparse_form_body(plain) and plain.body["text"] == "pools"
    # "payload" in a form that is neither: Bolt's {} stays (no listener, as before).
    other = AsyncBoltRequest(body=urlencode({"token": "x", "note": "payload"}), headers=FORM)
    assert other.body == {} and not reparse_form_body(other) and other.body == {}
