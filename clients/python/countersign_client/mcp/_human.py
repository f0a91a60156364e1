"""The ``ask_human`` tool of ``countersign-mcp serve``: a question for a person of a pool (POST /v1/questions).

As with ``request_approval``, the wait is bounded; a question still unanswered when it runs out is
remembered by its call (question and choices), so asking again resumes the wait on it rather than
putting a second card in front of the pool. Its answer answers that one call and is forgotten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import mcp_types as types

from countersign_client.client import AsyncCountersign
from countersign_client.errors import CountersignError
from countersign_client.models import Question

TOOL_NAME = "ask_human"

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "description": "What you need a person to tell you (at most 2,000 characters)."},
        "choices": {
            "type": "array",
            "items": {"type": "string", "maxLength": 75},
            "minItems": 1,
            "maxItems": 10,
            "description": "Answers to offer as buttons; the person may still write their own.",
        },
        "reason": {"type": "string", "description": "Why you ask, shown with the question."},
        "pool": {"type": "string", "description": "The pool of people to ask; default: the team's default pool."},
    },
    "required": ["question"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answered": {"type": "boolean"},
        "status": {"type": "string", "description": "answered, pending, expired or cancelled."},
        "answer": {"type": ["string", "null"], "description": "The answer: the chosen choice or what they wrote."},
        "choice": {"type": ["integer", "null"], "description": "The index of the chosen choice; null if written."},
        "by": {"type": ["string", "null"], "description": "The Slack user id of who answered."},
        "question_id": {"type": "string"},
    },
    "required": ["answered", "status", "question_id"],
}

TOOL = types.Tool(
    name=TOOL_NAME,
    title="Ask a human a question",
    description=(
        "Ask the team's people (in Slack, through Countersign) a question only a person can answer: a "
        "decision, a missing fact, a preference. Offer choices when you can. Use the answer as the person's "
        "word. If it is still unanswered when the wait ends, call again with the same question to keep waiting."
    ),
    input_schema=INPUT_SCHEMA,
    output_schema=OUTPUT_SCHEMA,
    annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=False),
)


class HumanAsker:
    """Ask questions through ``client``, waiting up to ``wait`` seconds for each answer."""

    def __init__(self, client: AsyncCountersign, *, wait: float) -> None:
        self.client = client
        self.wait = wait
        self._unanswered: dict[str, str] = {}  # call digest -> id of a question whose wait ran out

    async def call(self, arguments: Mapping[str, Any]) -> types.CallToolResult:
        question, choices = arguments.get("question"), arguments.get("choices")
        if not isinstance(question, str) or not question.strip():
            return _failed("ask_human needs a question: what you need a person to tell you")
        if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
            return _failed("choices must be a list of strings (at most 10, each at most 75 characters)")
        reason, pool = arguments.get("reason"), arguments.get("pool")
        digest = _digest(question, choices, pool)
        try:
            earlier = self._unanswered.pop(digest, None)
            if earlier is not None:
                found = await self.client.get_question(earlier, wait=min(self.wait, 60))
            else:
                context = {"reason": reason} if isinstance(reason, str) and reason else None
                found = await self.client.ask_question(
                    question, choices, context=context, pool=pool if isinstance(pool, str) else None, wait=self.wait
                )
        except CountersignError as exc:
            return _failed(f"Could not ask the question; no answer. Error: {exc}")
        if found.pending:
            self._unanswered[digest] = found.id
        return types.CallToolResult(content=_text(describe(found)), structured_content=structured(found))


def structured(question: Question) -> dict[str, Any]:
    answer = question.answer
    return {
        "answered": answer is not None,
        "status": question.status,
        "answer": answer.text if answer else None,
        "choice": answer.choice if answer else None,
        "by": answer.by if answer else None,
        "question_id": question.id,
    }


def describe(question: Question) -> str:
    ref = f"(Countersign question {question.id})"
    if question.answer is not None:
        return f"{question.answer.by} answered {ref}: {question.answer.text}"
    if question.pending:
        return f"No answer yet {ref}. Call ask_human again with the same question to keep waiting."
    return f"Nobody answered before the deadline {ref}: decide without it, or ask the user."


def _digest(question: str, choices: Sequence[str] | None, pool: Any) -> str:
    return hashlib.sha256(json.dumps([question, choices, pool], default=str).encode()).hexdigest()


def _text(result: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=result)]


def _failed(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=_text(message), is_error=True)
