"""app.yaml against the constraints of Slack's app-manifest schema (manifest.schema.1.0.0.json).

The schema itself is not vendored; this model mirrors the parts of it app.yaml uses:
unknown keys refused, the same length limits and URL patterns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Url = Annotated[str, StringConstraints(pattern=r"^https?://", max_length=3500)]
Scope = Annotated[str, StringConstraints(max_length=50)]


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metadata(_S):
    major_version: int
    minor_version: int


class DisplayInformation(_S):
    name: Annotated[str, StringConstraints(min_length=1, max_length=35)]
    description: Annotated[str, StringConstraints(min_length=1, max_length=140)] | None = None
    background_color: Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$")] | None = None
    long_description: Annotated[str, StringConstraints(min_length=175, max_length=4000)] | None = None


class AppHome(_S):
    home_tab_enabled: bool
    messages_tab_enabled: bool
    messages_tab_read_only_enabled: bool


class BotUser(_S):
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    always_online: bool


class SlashCommand(_S):
    command: Annotated[str, StringConstraints(pattern=r"^/", min_length=2, max_length=32)]
    url: Annotated[str, StringConstraints(pattern=r"^https?://", max_length=3000)]
    description: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    usage_hint: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    should_escape: bool


class Features(_S):
    app_home: AppHome
    bot_user: BotUser
    slash_commands: Annotated[list[SlashCommand], Field(min_length=1, max_length=50)]


class Scopes(_S):
    bot: Annotated[list[Scope], Field(max_length=255)]


class OAuth(_S):
    scopes: Scopes


class Events(_S):
    request_url: Url
    bot_events: list[Scope]


class Interactivity(_S):
    is_enabled: Literal[True]
    request_url: Url


class Settings(_S):
    event_subscriptions: Events
    interactivity: Interactivity
    org_deploy_enabled: bool
    socket_mode_enabled: bool
    token_rotation_enabled: bool


class AppManifest(_S):
    metadata: Metadata = Field(alias="_metadata")
    display_information: DisplayInformation
    features: Features
    oauth_config: OAuth
    settings: Settings


def test_app_yaml_is_a_valid_slack_manifest_for_this_bot(repo_root: Path) -> None:
    manifest = AppManifest.model_validate(yaml.safe_load((repo_root / "app.yaml").read_text()))
    assert [c.command for c in manifest.features.slash_commands] == ["/hitl"]
    assert manifest.features.app_home.home_tab_enabled
    assert "app_home_opened" in manifest.settings.event_subscriptions.bot_events
    urls = {manifest.settings.interactivity.request_url, manifest.settings.event_subscriptions.request_url}
    urls |= {c.url for c in manifest.features.slash_commands}
    assert all(u.endswith("/slack/events") for u in urls)
    # what the bot calls needs these scopes (chat.postMessage, users.info, usergroups.users.list, conversations.*)
    assert {"chat:write", "commands", "users:read", "usergroups:read", "channels:read", "channels:join"} <= set(
        manifest.oauth_config.scopes.bot
    )
