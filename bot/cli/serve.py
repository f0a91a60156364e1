"""``countersign serve``: the service, configured from the environment."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from bot import logs
from bot.config import ConfigError, Settings
from policy import ManifestError


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("serve", help="run the service (Slack events, agent API, health)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"countersign: {exc}", file=sys.stderr)
        return 2
    logs.configure(json_lines=settings.log_json)
    try:
        asyncio.run(serve(settings))
    except (ConfigError, ManifestError) as exc:
        print(f"countersign: refusing to start: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(settings: Settings) -> None:
    from bot.runtime import Runtime

    runtime = await Runtime.build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await runtime.start()
    print(f"countersign serving on {url} (Slack events at {url}/slack/events, agent API at {url}/v1)", flush=True)
    try:
        await stop.wait()
    finally:
        await runtime.stop()
