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
    with pytest.raises(ConfigError, match="database_pool_size"):
        Settings.from_env({"COUNTERSIGN_DATABASE_POOL_SIZE": value})


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
