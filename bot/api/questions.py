"""``/v1/questions``: an agent asks a person (a human as a tool). Same keys, rate limits, errors, idempotency,
long polls and withdrawal (``…/cancel``) as ``/v1/requests`` (bot.api.handlers), over the questions use case
(bot.service.questions)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.api.handlers import AgentApi, error, parse_json, request_id_of
from bot.logs import log_context
from bot.service.question_models import AskQuestion, QuestionOut
from bot.service.questions import Questions
from bot.waiters import parse_prefer_wait
from policy import Mode


def _json(resource: QuestionOut) -> web.Response:
    return web.json_response(text=resource.model_dump_json(), status=202 if resource.status == "pending" else 200)


class QuestionApi:
    """The question routes, authenticated and rate-limited by the agent API they are added to."""

    def __init__(self, api: AgentApi, questions: Questions) -> None:
        self.api = api
        self.questions = questions

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/questions", self.create),
            web.get("/v1/questions/{id}", self.get),
            web.post("/v1/questions/{id}/cancel", self.cancel),
        ]

    async def create(self, request: web.Request) -> web.Response:
        auth = await self.api.authenticate(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, agent = auth
        with log_context(tenant=tenant):
            try:
                data: Any = parse_json(await request.read())
            except ValueError as exc:
                return error(400, "malformed_json", f"the body is not JSON: {exc}")
            if not isinstance(data, dict):
                return error(400, "malformed_json", "the body must be a JSON object")
            try:
                body = AskQuestion.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or None
                return error(422, "invalid", f"{field}: {first['msg']}" if field else first["msg"], field)
            resource, _ = await self.questions.ask(tenant, agent, body)
            wait = parse_prefer_wait(request.headers.get("Prefer"))
            # As for requests: an async question's answer goes to its callback, and the agent goes on.
            if wait and resource.status == "pending" and resource.mode is Mode.SYNC:
                resource = await self.questions.wait(tenant, resource.id, wait)
            return _json(resource)

    async def get(self, request: web.Request) -> web.Response:
        auth = await self.api.authenticate(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, _ = auth
        question_id = request_id_of(request)
        wait = parse_prefer_wait(request.headers.get("Prefer"))
        with log_context(tenant=tenant, request_id=question_id):
            if wait:
                return _json(await self.questions.wait(tenant, question_id, wait))
            return _json(await self.questions.get(tenant, question_id))

    async def cancel(self, request: web.Request) -> web.Response:
        """The agent withdraws a pending question: ``200`` with it, ``409`` once answered or closed."""
        auth = await self.api.authenticate(request)
        if isinstance(auth, web.Response):
            return auth
        tenant, _ = auth
        question_id = request_id_of(request)
        with log_context(tenant=tenant, request_id=question_id):
            return _json(await self.questions.cancel(tenant, question_id))
