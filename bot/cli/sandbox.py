"""`countersign sandbox`: the Slack emulator and its page on one machine, seeded from the manifests."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("sandbox", help="run a local Slack emulator with its web page (no workspace needed)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3300, help="port of the page and Web API (default 3300; 0: any)")
    parser.add_argument(
        "--manifests", type=Path, default=Path("manifests"), help="manifests directory (default ./manifests)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".countersign"), help="state directory (default ./.countersign)"
    )
    parser.add_argument("--bot-url", help="deliver interactions to this /slack/events URL (a running service)")
    parser.add_argument("--agent-api-url", help="base URL of the agent API the sample panel posts to")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here so other commands never load the emulator.
    from bot.sandbox.runner import SandboxError, SandboxOptions, credentials, load_seed, run_sandbox
    from bot.sandbox.server import Emulator

    try:
        seed = load_seed(args.manifests)
        creds = credentials(args.data_dir)
    except SandboxError as exc:
        print(f"countersign sandbox: {exc}", file=sys.stderr)
        return 1
    options = SandboxOptions(args.host, args.port, args.bot_url, args.agent_api_url)

    def ready(emulator: Emulator) -> None:
        print(f"Slack emulator running: open {emulator.url}/", flush=True)
        print(f"  Web API (SLACK_API_URL): {emulator.api_url}", flush=True)
        ws = emulator.workspace
        print(f"  {len(ws.users)} users, {len(ws.channels)} channels, {len(seed.samples)} sample requests", flush=True)
        if not args.bot_url:
            print("  the approval service is not running: clicks and commands are recorded, not answered", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_sandbox(seed, creds, options, stop=stop, on_ready=ready)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"countersign sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0
