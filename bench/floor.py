"""The floor as a process of its own: a bare aiohttp server that does the least each path needs.

    python -m bench.floor --port PORT (--sqlite PATH | --postgres URL) [--slack-api URL --slack-token T]

Benchmarks that run ``countersign serve`` as a subprocess measure their floor the same way, so
both sides have a process (and a CPU) of their own:

* ``POST /v1/requests``: parse the JSON body, one INSERT, answer (the intake floor);
* ``POST /v1/cards``: one INSERT, one ``chat.postMessage``, answer its ts (request -> card);
* ``POST /slack/events``: a signed click's form body, one INSERT, then the agent's pending
  ``GET /poll/{ts}`` answers (click -> agent);
* ``GET /readyz``: 200 once the table exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable

import aiosqlite
import asyncpg
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

Insert = Callable[[str], Awaitable[None]]
MESSAGE_TS = re.compile(r'"message_ts": ?"([0-9.]+)"')


async def sqlite_insert(path: str) -> tuple[Insert, Callable[[], Awaitable[None]]]:
    """One INSERT and commit per call, on WAL with ``synchronous=NORMAL`` (what countersign's engine sets)."""
    db = await aiosqlite.connect(path)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("CREATE TABLE IF NOT EXISTS floor_request (id INTEGER PRIMARY KEY, body TEXT)")
    await db.commit()

    async def insert(body: str) -> None:
        await db.execute("INSERT INTO floor_request (body) VALUES (?)", (body,))
        await db.commit()

    return insert, db.close


async def postgres_insert(url: str) -> tuple[Insert, Callable[[], Awaitable[None]]]:
    """One INSERT per call through an asyncpg pool (each its own committed transaction)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    await pool.execute("CREATE TABLE IF NOT EXISTS floor_request (id BIGSERIAL PRIMARY KEY, body TEXT)")

    async def insert(body: str) -> None:
        await pool.execute("INSERT INTO floor_request (body) VALUES ($1)", body)

    return insert, pool.close


def build_app(insert: Insert, slack: AsyncWebClient | None, channel: str) -> web.Application:
    waiting: dict[str, asyncio.Future[str]] = {}

    def pending(ts: str) -> asyncio.Future[str]:
        return waiting.setdefault(ts, asyncio.get_running_loop().create_future())

    async def requests(request: web.Request) -> web.Response:
        await insert(json.dumps(await request.json()))
        return web.json_response({"ok": True}, status=202)

    async def cards(request: web.Request) -> web.Response:
        await insert(await request.text())
        assert slack is not None
        response = await slack.chat_postMessage(channel=channel, text="floor card", blocks=[])
        return web.json_response({"ts": response["ts"]}, status=202)

    async def events(request: web.Request) -> web.Response:
        payload = str((await request.post()).get("payload"))
        await insert(payload)
        if found := MESSAGE_TS.search(payload):
            waiter = pending(found.group(1))
            if not waiter.done():
                waiter.set_result("approved")
        return web.Response()

    async def poll(request: web.Request) -> web.Response:
        ts = request.match_info["ts"]
        status = await pending(ts)
        waiting.pop(ts, None)
        return web.json_response({"status": status})

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes(
        [
            web.post("/v1/requests", requests),
            web.post("/v1/cards", cards),
            web.post("/slack/events", events),
            web.get("/poll/{ts}", poll),
            web.get("/readyz", ready),
        ]
    )
    return app


async def serve(args: argparse.Namespace) -> None:
    insert, close = await (sqlite_insert(args.sqlite) if args.sqlite else postgres_insert(args.postgres))
    slack = None
    if args.slack_api:
        slack = AsyncWebClient(token=args.slack_token, base_url=args.slack_api.rstrip("/") + "/")
    runner = web.AppRunner(build_app(insert, slack, args.channel), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    try:
        await asyncio.Event().wait()  # until terminated
    finally:
        await runner.cleanup()
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", help="a SQLite file")
    where.add_argument("--postgres", help="a PostgreSQL database URL (postgresql+asyncpg://...)")
    parser.add_argument("--slack-api", help="the Web API base URL for /v1/cards (the emulator's)")
    parser.add_argument("--slack-token", default="")
    parser.add_argument("--channel", default="C0SUPPORT1")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
