"""The manifest watcher reloads on every change of a file's content, a second save within the same
second included (a poller comparing modification times misses it), and on a poke; nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bot.manifestwatch import ManifestWatcher


class Reloads:
    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, list[str]()

    async def reload(self) -> None:
        self.seen.append(self.path.read_text())


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def test_two_saves_in_one_second_are_two_reloads_and_a_poke_is_one(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text("tenant: acme\n# v1\n")
    reloads = Reloads(path)
    watcher = ManifestWatcher(reloads, tmp_path, poll_seconds=0.02)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await asyncio.sleep(0.1)
        assert reloads.seen == []  # nothing changed: nothing reloaded
        path.write_text("tenant: acme\n# v2\n")
        await until(lambda: reloads.seen[-1:] == ["tenant: acme\n# v2\n"])
        path.write_text("tenant: acme\n# v3\n")  # the same second, very likely the same mtime second
        await until(lambda: reloads.seen[-1:] == ["tenant: acme\n# v3\n"])
        watcher.poke()
        await until(lambda: len(reloads.seen) == 3)
        await asyncio.sleep(0.1)
        assert len(reloads.seen) == 3
    finally:
        stop.set()
        await task
