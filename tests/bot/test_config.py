"""Settings read from the environment: defaults, and a clear refusal of values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings


def test_the_database_pool_size_comes_from_the_environment() -> None:
    assert Settings.from_env({}).database_pool_size == 20
    assert Settings.from_env({"COUNTERSIGN_DATABASE_POOL_SIZE": "40"}).database_pool_size == 40


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_pool_size_that_cannot_work_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="COUNTERSIGN_DATABASE_POOL_SIZE"):
        Settings.from_env({"COUNTERSIGN_DATABASE_POOL_SIZE": value})


def test_serve_names_every_missing_or_malformed_variable_at_once() -> None:
    env = {
        "COUNTERSIGN_PORT": "http",
        "COUNTERSIGN_SLACK_CHANNEL_RATE": "-1",
        "SLACK_APP_TOKEN": "xoxb-not-an-app-token",
    }
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env, service=True)
    message = str(refused.value)
    for variable in (
        "SLACK_BOT_TOKEN is not set",
        "SLACK_APP_TOKEN",
        "COUNTERSIGN_PORT",
        "COUNTERSIGN_SLACK_CHANNEL_RATE",
    ):
        assert variable in message, message
    # With a signing secret and a bot token it starts (Socket Mode needs no signing secret, HTTP does).
    Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, service=True)
    Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}, service=True)
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        Settings.from_env({"SLACK_BOT_TOKEN": "xoxb-1"}, service=True)
    # The other commands (migrations, keys) need no Slack settings.
    assert Settings.from_env({}).slack_bot_token is None


async def test_the_pool_size_reaches_the_engine_and_an_in_memory_database_still_opens(tmp_path: Path) -> None:
    from store.engine import create_engine

    on_file = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_size=20)
    in_memory = create_engine("sqlite+aiosqlite:///:memory:", pool_size=20)  # one shared connection
    try:
        assert on_file.sync_engine.pool.size() == 20  # type: ignore[attr-defined]
        async with in_memory.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT 1")).scalar() == 1
    finally:
        await on_file.dispose()
        await in_memory.dispose()


def test_the_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("countersign ")


def test_serve_help_lists_every_variable_the_service_reads(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            read.add(key)
            return super().get(key, default)

    Settings.from_env(Recording())
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = capsys.readouterr().out
    assert read and not [name for name in sorted(read) if name not in shown]
