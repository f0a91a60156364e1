"""One aiohttp application: Slack on /slack/events, the agent API on /v1, health on /healthz and /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from bot.api.handlers import MAX_BODY, AgentApi, Handler, errors_middleware
from bot.metrics import CONTENT_TYPE, UNMATCHED, Metrics
from bot.slack.app import CountersignApp

ReadinessCheck = Callable[[], Awaitable[dict[str, str]]]
MetricsExposition = Callable[[], Awaitable[bytes]]


def timing_middleware(metrics: Metrics) -> Middleware:
    """Every request's duration by its route's pattern (``/v1/requests/{id}``), never the raw path: a path
    no route serves is :data:`UNMATCHED`, so the labels stay bounded whatever clients send."""

    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started, status = loop.time(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else UNMATCHED
            metrics.http_request(route, request.method, status, loop.time() - started)

    return timed


def build_web_app(
    *,
    bolt: CountersignApp,
    api: AgentApi,
    readiness: ReadinessCheck,
    metrics: MetricsExposition,
    timings: Metrics | None = None,
) -> web.Application:
    # Timing outermost: it sees the status the errors middleware turned an exception into.
    timed = [timing_middleware(timings)] if timings is not None else []
    app = web.Application(client_max_size=MAX_BODY, middlewares=[*timed, errors_middleware])

    async def slack_events(request: web.Request) -> web.StreamResponse:
        raw_body = await request.read()  # cached: to_bolt_request reads the same bytes
        try:
            # Bolt parses the body while building its request, before it checks the signature:
            # a body it cannot read is refused here, unsigned or not, and nothing is acted on.
            bolt_request = await to_bolt_request(request)
        except (ValueError, AttributeError, TypeError, KeyError):
            bolt.refuse_unreadable(raw_body, request.headers)
            return web.json_response({"error": "unreadable request body"}, status=400)
        # Bolt's refusals (401 and the like) are audited by the app itself.
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def flush_refusals(app: web.Application) -> None:
        # Refusals still being counted are written before the database goes away.
        await bolt.refusals.close()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        checks = await readiness()
        ok = all(v == "ok" for v in checks.values())
        return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=await metrics(), headers={"Content-Type": CONTENT_TYPE})

    app.on_cleanup.append(flush_refusals)
    # Without a signing secret (Socket Mode) nothing could tell Slack's requests from forged ones:
    # the route does not exist rather than act on bodies nobody vouched for.
    if bolt.verifies_requests:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_routes(api.routes())
    return app
