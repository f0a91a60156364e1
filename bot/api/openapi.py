"""The OpenAPI document of the agent API, generated from the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from bot.api.models import ErrorOut
from bot.service.models import CreateRequest, KeysOut, RequestOut
from bot.service.question_models import AskQuestion, QuestionOut

_REF = "#/components/schemas/{model}"


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Malformed body", 401: "Missing or bad API key", 404: "No such request for this tenant",
            409: "Idempotency key reused with another body, or request already decided", 413: "Body over 256 KiB",
            422: "Invalid params or unknown action",
            429: "Over the API key's or the tenant's rate limit (code rate_limited); nothing was recorded"}  # fmt: skip
    responses: dict[str, Any] = {str(c): {"description": text[c], "content": _json("ErrorOut")} for c in codes}
    if 429 in codes:
        responses["429"]["headers"] = {"Retry-After": RETRY_AFTER}
    return responses


RETRY_AFTER = {
    "description": "Whole seconds until the call can succeed (at least 1)",
    "schema": {"type": "integer", "minimum": 1},
}


PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "RFC 7240 `wait=N` (N ≤ 60): hold the answer up to N seconds for a decision",
    "schema": {"type": "string", "example": "wait=30"},
}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "serialization") for m in (RequestOut, KeysOut, ErrorOut, QuestionOut)]
        + [(CreateRequest, "validation"), (AskQuestion, "validation")],
        ref_template=_REF,
    )
    decided = {"description": "Decided (or auto-approved / denied)", "content": _json("RequestOut")}
    pending = {"description": "Still pending", "content": _json("RequestOut")}
    answered = {"description": "Answered (or expired unanswered)", "content": _json("QuestionOut")}
    asking = {"description": "Not answered yet", "content": _json("QuestionOut")}
    withdrawn = {"description": "Withdrawn (status cancelled)", "content": _json("QuestionOut")}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Countersign agent API", "version": "1"},
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/requests": {
                "post": {
                    "operationId": "createRequest",
                    "parameters": [PREFER],
                    "requestBody": {"required": True, "content": _json("CreateRequest")},
                    "responses": {"200": decided, "202": pending, **_errors(400, 401, 409, 413, 422, 429)},
                }
            },
            "/v1/requests/{id}": {
                "get": {
                    "operationId": "getRequest",
                    "parameters": [ID, PREFER],
                    "responses": {"200": decided, "202": pending, **_errors(401, 404, 429)},
                }
            },
            "/v1/requests/{id}/cancel": {
                "post": {
                    "operationId": "cancelRequest",
                    "parameters": [ID],
                    "responses": {"200": decided, **_errors(401, 404, 409, 429)},
                }
            },
            "/v1/questions": {
                "post": {
                    "operationId": "askQuestion",
                    "description": "Ask a person of a pool: choices as buttons, or a written answer (docs/api.md)",
                    "parameters": [PREFER],
                    "requestBody": {"required": True, "content": _json("AskQuestion")},
                    "responses": {"200": answered, "202": asking, **_errors(400, 401, 409, 413, 422, 429)},
                }
            },
            "/v1/questions/{id}": {
                "get": {
                    "operationId": "getQuestion",
                    "parameters": [ID, PREFER],
                    "responses": {"200": answered, "202": asking, **_errors(401, 404, 429)},
                }
            },
            "/v1/questions/{id}/cancel": {
                "post": {
                    "operationId": "cancelQuestion",
                    "description": "Withdraw a pending question; 409 once answered, expired or cancelled",
                    "parameters": [ID],
                    "responses": {"200": withdrawn, **_errors(401, 404, 409, 429)},
                }
            },
            "/v1/keys": {
                "get": {
                    "operationId": "listReceiptKeys",
                    "description": "The tenant's Ed25519 receipt keys: the signing one, and retired ones until the"
                    " last receipt they signed expires (docs/receipts.md)",
                    "responses": {
                        "200": {"description": "The tenant's receipt keys", "content": _json("KeysOut")},
                        **_errors(401, 429),
                    },
                }
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
