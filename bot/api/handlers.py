"""The agent API over aiohttp: bearer keys, JSON in and out, errors in one shape, never a 500 for bad input."""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.api import claude_code, receipt_keys
from bot.api.keys import KeyCache
from bot.api.models import ErrorDetail, ErrorOut
from bot.api.openapi import openapi_document
from bot.errors import BotError, Conflict, Forbidden, InvalidRequest, NotFound
from bot.logs import log_context
from bot.metrics import Metrics
from bot.ratelimit import RateLimiter
from bot.service.intake import Intake
from bot.service.models import CreateRequest, RequestOut
from bot.waiters import parse_prefer_wait
from policy import Mode, Status
from store.tenants import KeyHolder, hash_key
from store.uow import uow

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
TENANT = web.AppKey("tenant", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body = ErrorOut(error=ErrorDetail(code=code, message=message, field=field)).model_dump(exclude_none=True)
    return web.json_response(body, status=status)


def _json(resource: RequestOut) -> web.Response:
    status = 202 if resource.status is Status.PENDING else 200
    return web.json_response(text=resource.model_dump_json(), status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of a /v1 call leaves as the JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, "body_too_large", f"the body is over {MAX_BODY // 1024} KiB")
    except web.HTTPNotFound:
        return error(404, "not_found", "no such endpoint")
    except web.HTTPMethodNotAllowed as exc:
        return error(405, "method_not_allowed", f"use {', '.join(sorted(exc.allowed_methods))}")
    except NotFound as exc:
        return error(404, "not_found", exc.user_message)
    except Conflict as exc:
        return error(409, "conflict", exc.user_message)
    except Forbidden as exc:
        return error(403, "forbidden", exc.user_message)
    except InvalidRequest as exc:
        return error(422, exc.code, exc.message, exc.field)
    except BotError as exc:
        return error(400, "bad_request", exc.user_message)
    except web.HTTPException:
        raise
    except Exception:
        # A bug, not bad input: still the JSON shape, with a reference to find the log line.
        ref = uuid.uuid4().hex[:8]
        log.exception("agent API error (ref %s) on %s %s", ref, request.method, request.path)
        return error(500, "internal", f"something went wrong on our side (ref {ref}); nothing was recorded")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999 overflows to inf: NaN/Infinity by the back door
        raise ValueError(f"{literal[:40]} is out of range")
    return value


# A lone surrogate ("\\ud800") is valid JSON but not Unicode: it cannot be encoded, hashed or stored.
# NUL is refused by PostgreSQL (text and jsonb) and truncates strings in C libraries downstream.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _UNSTORABLE.search(node):
                raise ValueError("a string holds NUL or an unpaired surrogate escape (\\u0000, \\ud800...)")
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (RFC 8259): no NaN/Infinity, which no database JSON type stores and no other parser reads.

    Strings must be storable Unicode too: no NUL, no unpaired surrogates.

    Raises:
        ValueError: not JSON, not UTF-8, not storable, or nested too deep for the parser.
    """
    try:
        value = json.loads(raw, parse_constant=_no_constants, parse_float=_finite)
    except RecursionError as exc:
        raise ValueError("the body is nested too deeply") from exc
    _check_strings(value)
    return value


def request_id_of(request: web.Request) -> str:
    """The id in the path (a request's or a question's); see :func:`_request_id`."""
    return _request_id(request)


def _request_id(request: web.Request) -> str:
    """The id in the path; one no request can have (NUL, surrogates, huge) is a 404 before any query."""
    request_id = request.match_info["id"]
    if len(request_id) > 200 or _UNSTORABLE.search(request_id):
        raise NotFound("no such request")
    return request_id


class AgentApi:
    """The ``/v1`` routes. Keys are checked against the store, and remembered for a few seconds (``KeyCache``);
    then each call takes a token from its key's and its tenant's buckets (``RateLimiter``), or is refused."""

    def __init__(
        self,
        service: Intake,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        limiter: RateLimiter,
        metrics: Metrics,
        key_cache_seconds: float = 0,
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.limiter = limiter
        self.metrics = metrics
        self.keys: KeyCache[KeyHolder] = KeyCache(self._authenticate, ttl=key_cache_seconds)
        # Routes of other resources served with these keys and limits (bot.api.questions), added by the runtime.
        self.more_routes: list[web.RouteDef] = []

    async def _authenticate(self, key: str) -> KeyHolder | None:
        async with uow(self.sessionmaker, read_only=True) as tx:
            return await tx.tenants.key_holder(key)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/requests", self.create),
            web.get("/v1/requests/{id}", self.get),
            web.post("/v1/requests/{id}/cancel", self.cancel),
            web.post("/v1/hooks/claude-code", self.claude_code_hook),
            web.get("/v1/keys", receipt_keys.handler(self._tenant, self.sessionmaker, self.service.clock)),
            web.get("/v1/openapi.json", self.openapi),
            *self.more_routes,
        ]

    async def authenticate(self, request: web.Request) -> tuple[str, str] | web.Response:
        """(tenant, agent) for the request's bearer key, after its rate limits; or the refusal to send."""
        return await self._tenant(request)

    async def _tenant(self, request: web.Request) -> tuple[str, str] | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return error(401, "unauthorized", "send 'Authorization: Bearer <tenant API key>'")
        key = key.strip()
        holder = await self.keys.holder(key)
        if holder is None:
            return error(401, "unauthorized", "unknown or revoked API key")
        tenant = holder.tenant
        # After the key check, so that nobody can spend a tenant's allowance with made-up keys.
        throttled = self.limiter.admit(tenant, hash_key(key))
        if throttled is not None:
            self.metrics.rate_limited(tenant, throttled.scope)
            seconds = throttled.retry_after_seconds
            whose = "API key" if throttled.scope == "key" else "tenant"
            message = f"too many requests for this {whose}; retry after {seconds} s (nothing was recorded)"
            refused = error(429, "rate_limited", message)
            refused.headers["Retry-After"] = str(seconds)
            return refused
        return tenant, holder.agent

    async def create(self, request: web.Request) -> web.Response:
        auth = await self._tenant(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, agent = auth
        with log_context(tenant=tenant):
            return await self._create(request, tenant, agent)

    async def _create(self, request: web.Request, tenant: str, agent: str) -> web.Response:
        raw = await request.read()
        try:
            data: Any = parse_json(raw)
        except ValueError as exc:
            return error(400, "malformed_json", f"the body is not JSON: {exc}")
        if not isinstance(data, dict):
            return error(400, "malformed_json", "the body must be a JSON object")
        try:
            body = CreateRequest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            return error(422, "invalid", f"{field}: {first['msg']}" if field else first["msg"], field)
        resource, _ = await self.service.submit(tenant, agent, body)
        wait = parse_prefer_wait(request.headers.get("Prefer"))
        # An async request's decision goes to its callback and the agent is meant to go on at once:
        # holding the answer would make every agent that always sends Prefer (our client does) block.
        if wait and resource.status is Status.PENDING and resource.mode is Mode.SYNC:
            resource = await self._wait(tenant, resource.id, wait)
        return _json(resource)

    async def get(self, request: web.Request) -> web.Response:
        auth = await self._tenant(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, _ = auth
        request_id = _request_id(request)
        wait = parse_prefer_wait(request.headers.get("Prefer"))
        with log_context(tenant=tenant, request_id=request_id):
            if wait:
                return _json(await self._wait(tenant, request_id, wait))
            return _json(await self.service.get(tenant, request_id))

    async def _wait(self, tenant: str, request_id: str, seconds: float) -> RequestOut:
        """A long poll; one that a decision answered while it waited is when its agent learns of it."""
        started = self.service.clock.now()
        resource = await self.service.wait(tenant, request_id, seconds)
        if resource.decision is not None and resource.decision.at >= started:
            told = (self.service.clock.now() - resource.decision.at).total_seconds()
            self.metrics.agent_told(tenant, "long_poll", told)
        return resource

    async def cancel(self, request: web.Request) -> web.Response:
        auth = await self._tenant(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, _ = auth
        request_id = _request_id(request)
        with log_context(tenant=tenant, request_id=request_id):
            resource = await self.service.cancel(tenant, request_id)
        return web.json_response(text=resource.model_dump_json(), status=200)

    async def claude_code_hook(self, request: web.Request) -> web.StreamResponse:
        """Claude Code's PreToolUse hook (bot.api.claude_code): the ask of ``create``, answered as hook output.

        A refused call (bad key, rate limit, bad input) is answered as a deny, not an error status: Claude
        Code lets the tool run when an http hook answers anything but 2xx.
        """
        answered = await errors_middleware(request, self._claude_code_hook)
        if answered.status < 400 or not isinstance(answered, web.Response) or answered.text is None:
            return answered
        err = json.loads(answered.text)["error"]
        refused = claude_code.refusal(answered.status, err["code"], err["message"], err.get("field"))
        return web.json_response(refused.output(), headers=refused.headers())

    async def _claude_code_hook(self, request: web.Request) -> web.Response:
        auth = await self._tenant(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, agent = auth
        with log_context(tenant=tenant):
            opts = claude_code.options(request.query, request.headers.get("Prefer"))
            try:
                data: Any = parse_json(await request.read())
            except ValueError as exc:
                return error(400, "malformed_json", f"the body is not JSON: {exc}")
            hook = claude_code.parse(data)

            async def submit(body: CreateRequest) -> tuple[RequestOut, bool]:
                return await self.service.submit(tenant, agent, body)

            async def wait(request_id: str, seconds: int) -> RequestOut:
                return await self._wait(tenant, request_id, seconds)

            answer = await claude_code.ask(hook, opts, submit=submit, wait=wait)
        return web.json_response(answer.output(), headers=answer.headers())

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())
