"""``countersign-mcp``: ``serve`` (the ``request_approval`` tool) and ``gate -- COMMAND…`` (a gateway).

Both speak MCP on stdin/stdout (``serve --http PORT``: streamable HTTP on ``/mcp``), so nothing
but protocol goes to stdout: messages and logs go to stderr. A missing URL or key is one line
and exit status 2, before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from countersign_client.client import AsyncCountersign
from countersign_client.config import KEY_VARIABLE, URL_VARIABLE, Endpoint, endpoint
from countersign_client.errors import ConfigurationError
from countersign_client.mcp._ask import DEFAULT_WAIT, Asker
from countersign_client.mcp.gate import Upstream, build_gate
from countersign_client.mcp.serve import build_server

PROG = "countersign-mcp"


class StartFailed(Exception):
    """The server could not start (the upstream would not run or answer): one line for the user."""


def _positive(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {value}")
    return seconds


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=PROG, description="Countersign for MCP: ask humans in Slack before acting.")
    commands = top.add_subparsers(dest="command", required=True, metavar="{serve,gate}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the Countersign agent API (default ${URL_VARIABLE})")
    common.add_argument("--key", help=f"the tenant's agent API key (default ${KEY_VARIABLE})")
    common.add_argument(
        "--wait",
        type=_positive,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"how long one tool call waits for a human (default {DEFAULT_WAIT:g})",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log each decision to stderr")
    serve = commands.add_parser(
        "serve", parents=[common], help="an MCP server with one tool, request_approval", description=None
    )
    serve.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on PORT (path /mcp)")
    serve.add_argument("--host", default="127.0.0.1", help="the address --http listens on (default 127.0.0.1)")
    gate = commands.add_parser(
        "gate",
        parents=[common],
        help="front a stdio MCP server: every tool call goes through Countersign first",
        usage=f"{PROG} gate [--url URL] [--key KEY] [--wait SECONDS] -- COMMAND [ARG ...]",
    )
    gate.add_argument("upstream", nargs=argparse.REMAINDER, help="the MCP server to front, after --")
    return top


def _upstream_env() -> dict[str, str]:
    """The gate's environment, less Countersign's key: the upstream runs the calls, it never asks for them."""
    return {k: v for k, v in os.environ.items() if k not in (KEY_VARIABLE, URL_VARIABLE)}


async def _run_stdio(server: Server[Any]) -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def _run_http(server: Server[Any], host: str, port: int) -> None:
    import uvicorn  # a dependency of mcp; only --http needs it

    app = server.streamable_http_app(host=host)
    print(f"{PROG}: serving MCP on http://{host}:{port}/mcp", file=sys.stderr)
    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).serve()


async def serve(args: argparse.Namespace, where: Endpoint) -> None:
    async with AsyncCountersign(where.url, where.api_key) as client:
        server = build_server(Asker(client, wait=args.wait))
        if args.http is not None:
            await _run_http(server, args.host, args.http)
        else:
            await _run_stdio(server)


async def gate(args: argparse.Namespace, where: Endpoint, command: list[str]) -> None:
    params = StdioServerParameters(command=command[0], args=command[1:], env=_upstream_env())
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(AsyncCountersign(where.url, where.api_key))
        try:
            # No response cache: the tool list is the upstream's, as it is now.
            upstream = await stack.enter_async_context(Client(params, cache=None))
        except Exception as exc:
            raise StartFailed(f"the upstream server {' '.join(command)!r} did not start: {_first(exc)}") from exc
        info = upstream.server_info
        front = Upstream(upstream, Path(command[0]).name, info.name if info is not None else None)
        # One gate process serves one agent session: its requests share a workflow id.
        server = build_gate(front, Asker(client, wait=args.wait), workflow_id=f"mcp-gate-{uuid.uuid4().hex[:12]}")
        await _run_stdio(server)


def _first(exc: BaseException) -> str:
    """The first leaf of an exception group (the SDK's task groups wrap what went wrong)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING, format=f"{PROG}: %(message)s"
    )
    try:
        where = endpoint(args.url, args.key)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            anyio.run(serve, args, where)
        else:
            command = args.upstream[1:] if args.upstream[:1] == ["--"] else args.upstream
            if not command:
                print(f"{PROG}: gate needs the upstream server's command after --", file=sys.stderr)
                return 2
            anyio.run(gate, args, where, command)
    except StartFailed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
