"""`countersign sandbox`: the service, SQLite, the example manifests and the Slack emulator in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.manifests import add_manifests, manifests_dir

if TYPE_CHECKING:
    from bot.sandbox.runner import Sandbox


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "sandbox", help="run the service with a local Slack emulator and its web page (no workspace needed)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3300, help="port of the page and Web API (default 3300; 0: any)")
    parser.add_argument(
        "--service-port", type=int, default=0, help="port of the service: agent API, /slack/events (default: any)"
    )
    add_manifests(parser)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".countersign"),
        help="database, credentials and agent keys (default ./.countersign)",
    )
    parser.add_argument(
        "--bot-url", help="deliver interactions to this /slack/events URL of a service run elsewhere (starts none)"
    )
    parser.add_argument("--agent-api-url", help="with --bot-url: base URL of that service's agent API")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here so other commands never load the emulator.
    from bot.sandbox.runner import SandboxError, SandboxOptions, credentials, load_seed, run_sandbox

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.manifests, shipped = manifests_dir(args.manifests)
    if shipped:
        print("no ./manifests here: using the example manifests shipped with countersign", file=sys.stderr)
    try:
        seed = load_seed(args.manifests)
        creds = credentials(args.data_dir)
    except SandboxError as exc:
        print(f"countersign sandbox: {exc}", file=sys.stderr)
        return 1
    options = SandboxOptions(
        host=args.host,
        port=args.port,
        service_port=args.service_port,
        data_dir=args.data_dir,
        manifests=args.manifests,
        bot_url=args.bot_url,
        agent_api_url=args.agent_api_url,
    )

    def ready(sandbox: Sandbox) -> None:
        emulator = sandbox.emulator
        ws = emulator.workspace
        print(f"Countersign sandbox running: open {sandbox.page_url}", flush=True)
        print(f"  {len(ws.users)} users, {len(ws.channels)} channels, {len(seed.samples)} sample requests", flush=True)
        if sandbox.runtime is not None:
            print(f"  agent API (COUNTERSIGN_URL): {sandbox.agent_api_url}", flush=True)
            print(f"  agent API keys (COUNTERSIGN_API_KEY), one per tenant: {sandbox.keys_path}", flush=True)
            print(f"  database: {sandbox.database_path}", flush=True)
        else:
            print(f"  delivering to {args.bot_url}; the service is not started here", flush=True)
        print(f"  Slack Web API (SLACK_API_URL): {emulator.api_url}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_sandbox(seed, creds, options, stop=stop, on_ready=ready)

    try:
        asyncio.run(main())
    except SandboxError as exc:
        print(f"countersign sandbox: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"countersign sandbox: cannot listen on {args.host}: {exc}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0
