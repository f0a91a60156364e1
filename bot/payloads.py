"""Slack payloads parsed at the edge into typed models; nothing deeper handles raw dicts."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import BadPayload

SHOWN_DIGEST = 12  # hex digits of params_sha256 a button carries: enough to tell two versions apart


def shown_digest(params_sha256: str) -> str:
    return params_sha256[:SHOWN_DIGEST]


class CardRef(BaseModel):
    """What a card's buttons and modals carry: a small, versioned reference, not a string to split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    tenant: str = Field(alias="t")
    request_id: str = Field(alias="r")
    # The start of the params' digest the card showed: a vote is for those params, so a click on a card
    # drawn before an edit is refused, not counted for params its voter never saw. None on older cards.
    params: str | None = Field(default=None, alias="p")

    def dumps(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | None) -> CardRef:
        """Raises BadPayload for anything that is not a reference we wrote."""
        try:
            return cls.model_validate(json.loads(raw or ""))
        except (ValueError, ValidationError) as exc:
            raise BadPayload("this button does not belong to a Countersign request") from exc


class BulkRef(BaseModel):
    """What the App Home's bulk approval carries: a tenant's action and, once chosen, the selection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    tenant: str = Field(alias="t")
    action: str = Field(alias="a")
    request_ids: tuple[str, ...] = Field(default=(), alias="r")
    # Per request, the start of the digest of the params the check step showed (see CardRef.params).
    params: tuple[str, ...] = Field(default=(), alias="p")

    def dumps(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | None) -> BulkRef:
        """Raises BadPayload for anything that is not a reference we wrote."""
        try:
            return cls.model_validate(json.loads(raw or ""))
        except (ValueError, ValidationError) as exc:
            raise BadPayload("this button does not belong to a Countersign bulk approval") from exc


class _Loose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


M = TypeVar("M", bound=_Loose)


class SlackUser(_Loose):
    id: str
    name: str | None = None
    username: str | None = None
    team_id: str | None = None


class SlackTeam(_Loose):
    id: str


class Container(_Loose):
    type: str
    channel_id: str | None = None
    message_ts: str | None = None
    view_id: str | None = None


class ActionItem(_Loose):
    action_id: str
    block_id: str | None = None
    value: str | None = None


class BlockActions(_Loose):
    """A button click (``type: block_actions``)."""

    type: Literal["block_actions"]
    user: SlackUser
    team: SlackTeam | None = None
    trigger_id: str | None = None
    response_url: str | None = None
    container: Container | None = None
    actions: list[ActionItem]

    @property
    def action(self) -> ActionItem:
        return self.actions[0]


class ViewState(_Loose):
    values: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)


class View(_Loose):
    id: str | None = None
    callback_id: str | None = None
    private_metadata: str = ""
    state: ViewState = Field(default_factory=ViewState)

    def text(self, block_id: str, action_id: str) -> str:
        value = self.state.values.get(block_id, {}).get(action_id, {}).get("value")
        return value.strip() if isinstance(value, str) else ""

    def selected(self, block_id: str, action_id: str) -> str:
        """A select's chosen option's value ("" when nothing is chosen)."""
        option = self.state.values.get(block_id, {}).get(action_id, {}).get("selected_option")
        value = option.get("value") if isinstance(option, dict) else None
        return value if isinstance(value, str) else ""


class ViewSubmission(_Loose):
    type: Literal["view_submission"]
    user: SlackUser
    team: SlackTeam | None = None
    view: View


def _parse(model: type[M], body: dict[str, Any], what: str) -> M:
    """``body`` as ``model``; BadPayload (a message for the person) when Slack sent something else."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BadPayload(f"Slack sent {what} this app cannot read") from exc


def parse_block_actions(body: dict[str, Any]) -> BlockActions:
    return _parse(BlockActions, body, "a click")


def parse_view_submission(body: dict[str, Any]) -> ViewSubmission:
    return _parse(ViewSubmission, body, "a form")


class SlashCommand(_Loose):
    """A slash command's form fields (``/hitl ...``)."""

    user_id: str
    text: str = ""
    channel_id: str | None = None
    team_id: str | None = None


class AppHomeOpened(_Loose):
    """The ``app_home_opened`` event: someone opened one of the app's tabs."""

    user: str
    tab: str = "home"


def parse_slash_command(body: dict[str, Any]) -> SlashCommand:
    return _parse(SlashCommand, body, "a command")
