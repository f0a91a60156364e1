"""``countersign serve``: the service, configured from the environment."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from bot import logs
from bot.config import ENVIRONMENT, ConfigError, Settings
from policy import ManifestError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    width = max(len(name) for name, _ in ENVIRONMENT)
    parser = sub.add_parser(
        "serve",
        help="run the service (Slack events, agent API, health)",
        description="Run the service: Slack's events on /slack/events (or Socket Mode), the agent API on /v1,"
        " /healthz, /readyz and /metrics. It is configured from the environment only.",
        epilog="environment:\n" + "\n".join(f"  {name:<{width}}  {meaning}" for name, meaning in ENVIRONMENT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ, service=True)
    except ConfigError as exc:
        print(f"countersign: {exc}", file=sys.stderr)
        return 2
    logs.configure(json_lines=settings.log_json, libraries=settings.library_log_level)
    try:
        asyncio.run(serve(settings))
    except (ConfigError, ManifestError) as exc:
        print(f"countersign: refusing to start: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, which stop it within seconds at any point, the start included;
    SIGHUP reloads the manifests."""
    from bot.runtime import Runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    building = asyncio.create_task(Runtime.build(settings))
    if not await _first(building, stop):
        return
    runtime = building.result()
    if runtime.manifest_watcher is not None:
        # SIGHUP: read the manifests again now (they are also picked up when a file changes).
        loop.add_signal_handler(signal.SIGHUP, runtime.manifest_watcher.poke)
    try:
        starting = asyncio.create_task(runtime.start())
        if not await _first(starting, stop):
            return
        url = starting.result()
        events = f"Slack events at {url}/slack/events" if settings.slack_app_token is None else "Slack in Socket Mode"
        print(f"countersign serving on {url} ({events}, agent API at {url}/v1)", flush=True)
        await stop.wait()
    finally:
        await runtime.stop()


async def _first(work: asyncio.Task[Any], stop: asyncio.Event) -> bool:
    """Wait for ``work`` or a stop signal: True if ``work`` finished (its error raised), False if stopped first."""
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return False
    work.result()
    return True
