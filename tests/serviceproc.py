"""``countersign`` as a separate process, for tests that kill it: start, wait until ready, run the CLI."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from bot.sandbox.server import Emulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(emu: Emulator, database_url: str, manifests: Path) -> dict[str, str]:
    """The environment of a ``countersign`` process talking to ``emu``; ours and Slack's variables replaced."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_"))}
    return {
        **keep,
        "SLACK_BOT_TOKEN": emu.config.bot_token,
        "SLACK_SIGNING_SECRET": emu.config.signing_secret,
        "SLACK_API_URL": emu.api_url,
        "COUNTERSIGN_DATABASE_URL": database_url,
        "COUNTERSIGN_MANIFESTS": str(manifests),
        "COUNTERSIGN_SLACK_CHANNEL_RATE": "0",  # unpaced: the emulator has no rate limit unless a test sets one
    }


@asynccontextmanager
async def serve(env: dict[str, str], port: int, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``countersign serve`` in its own process, ready when /readyz says so; its log goes to ``log``.

    (Not to a pipe nobody reads: a busy service fills the pipe and blocks on its next log line.)
    """
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", env={**env, "COUNTERSIGN_PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    try:
        await until_ok(port, "/readyz", log)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def until_ok(port: int, path: str, log: Path, *, tries: int = 400) -> None:
    """Wait until the service on ``port`` answers 200 at ``path`` (``/readyz``: ready; ``/healthz``: up)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(tries):
            try:
                async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the service never answered 200 at {path}: {log.read_text()[-2000:]}")


async def cli(env: dict[str, str], *args: str) -> str:
    """Run ``countersign ARGS`` and return its standard output (the test fails if it exits non-zero)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()
