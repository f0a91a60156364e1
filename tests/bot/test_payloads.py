from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.errors import BadPayload
from bot.payloads import CardRef, parse_block_actions, parse_view_submission

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "slack"


@pytest.mark.parametrize("raw", [None, "", "approve", "{}", '{"v":2,"t":"a","r":"b"}', '{"v":1,"t":"a"}', "[1]"])
def test_foreign_button_values_are_refused(raw: str | None) -> None:
    with pytest.raises(BadPayload):
        CardRef.loads(raw)


def test_card_ref_round_trip_is_small() -> None:
    ref = CardRef(t="acme-support", r="req_01HX")
    assert CardRef.loads(ref.dumps()) == ref
    assert len(ref.dumps()) < 60


def test_slack_samples_parse() -> None:
    click = parse_block_actions(json.loads((SAMPLES / "block_actions_message.json").read_text()))
    assert click.user.id and click.action.action_id and click.container is not None
    submission = parse_view_submission(json.loads((SAMPLES / "view_submission.json").read_text()))
    assert submission.view.callback_id


def test_malformed_click() -> None:
    with pytest.raises(BadPayload):
        parse_block_actions({"type": "block_actions", "user": {}})


def test_slash_command_and_home_event_parse_at_the_edge() -> None:
    from bot.payloads import AppHomeOpened, parse_slash_command

    command = parse_slash_command({"user_id": "U1", "text": "pools", "command": "/hitl", "extra": "kept out"})
    assert (command.user_id, command.text) == ("U1", "pools")
    assert parse_slash_command({"user_id": "U1"}).text == ""
    with pytest.raises(BadPayload):
        parse_slash_command({"text": "pools"})  # no user: nobody to answer or to check permissions for
    assert AppHomeOpened.model_validate({"type": "app_home_opened", "user": "U1"}).tab == "home"
