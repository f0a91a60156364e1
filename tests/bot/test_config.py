"""Settings read from the environment: defaults, and a clear refusal of values that cannot work."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Settings


def test_the_database_pool_size_comes_from_the_environment() -> None:
    assert Settings.from_env({}).database_pool_size == 20
    assert Settings.from_env({"COUNTERSIGN_DATABASE_POOL_SIZE": "40"}).database_pool_size == 40


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_pool_size_that_cannot_work_is_refused_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="database_pool_size"):
        Settings.from_env({"COUNTERSIGN_DATABASE_POOL_SIZE": value})
