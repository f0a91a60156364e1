"""Fuzzing the agent API from its own OpenAPI document (schemathesis): no 500s, errors in one JSON shape.

The manifest loader has its own property tests (tests/policy/test_fuzz_loader.py). Here every
operation of ``GET /v1/openapi.json`` gets ~50 valid-by-schema and ~50 invalid-by-schema cases
(deterministic: ``derandomize=True``), sent to the real service over HTTP with a real key.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, status_code_conformance

from tests.e2e.conftest import Stack

MAX_EXAMPLES = 50


def assert_error_shape(status: int, body: Any, what: str) -> None:
    assert status != 500 and status < 600, f"{what}: HTTP {status} {body!r}"
    if status < 400:
        return
    assert isinstance(body, dict) and set(body) == {"error"}, f"{what}: not the error shape: {body!r}"
    err = body["error"]
    assert isinstance(err, dict) and {"code", "message"} <= set(err) <= {"code", "message", "field"}, body
    assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str), body
    assert "field" not in err or isinstance(err["field"], str), body


def _fuzz(base_url: str, key: str, document: dict[str, Any], mode: GenerationMode) -> int:
    """Run every operation's strategy; returns how many calls were made (runs in a worker thread)."""
    schema = schemathesis.openapi.from_dict(document)
    calls = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                nonlocal calls
                # The real key always (auth is tested on its own below); no long polls (they only wait).
                headers = {"Authorization": f"Bearer {key}"}
                if case.headers and "Prefer" in case.headers:
                    headers["Prefer"] = "wait=0"
                response = case.call(base_url=base_url, session=session, headers=headers, timeout=15)
                calls += 1
                what = f"{case.method} {case.formatted_path} body={str(case.body)[:300]!r}"
                try:
                    body = response.json()
                except ValueError:
                    raise AssertionError(f"{what}: not JSON: {response.text[:300]!r}") from None
                assert_error_shape(response.status_code, body, what)
                # Every status the service answers is one the document lists, and the body matches its schema.
                case.validate_response(response, checks=[not_a_server_error, status_code_conformance])

            check()
    return calls


async def _document(stack: Stack) -> dict[str, Any]:
    async with stack.http.get(stack.url + "/v1/openapi.json") as resp:
        assert resp.status == 200
        document: dict[str, Any] = await resp.json()
    return document


async def test_valid_by_schema_cases_never_500_and_errors_keep_the_shape(stack: Stack) -> None:
    document = await _document(stack)
    calls = await asyncio.to_thread(_fuzz, stack.url, stack.keys["lab"], document, GenerationMode.POSITIVE)
    assert calls >= 3 * 10  # it really ran (hypothesis may stop early on small spaces, never at zero)


async def test_invalid_by_schema_cases_are_refused_in_the_error_shape(stack: Stack) -> None:
    document = await _document(stack)
    calls = await asyncio.to_thread(_fuzz, stack.url, stack.keys["lab"], document, GenerationMode.NEGATIVE)
    assert calls >= 10


async def test_raw_hostile_bodies_and_headers(stack: Stack) -> None:
    """What a schema cannot generate: broken JSON, wrong types at the top, odd headers and auth."""
    key = stack.keys["lab"]
    bodies: list[bytes] = [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"x"',
        b"\xff\xfe\x00",
        b'{"action": "crowd_vote", "params": {"x": NaN}}',
        b'{"action": "crowd_vote", "params": {"x": Infinity}}',
        b'{"action": "crowd_vote", "params": {"x": 1e999}}',
        b'{"action": "crowd_vote", "params": {"x": 123456789012345678901234567890}}',
        b'{"action": "crowd_vote", "params": {"\\u0000": "\\ud800"}}',
        b'{"action": "crowd_vote", "params": [], "context": "x"}',
        b'{"action": "crowd_vote", "params": {}, "idempotency_key": ""}',
        b'{"action": "crowd_vote", "params": {}, "callback_url": "javascript:alert(1)"}',
        b'{"action": "' + b"a" * 10_000 + b'", "params": {}}',
        b'{"action": "crowd_vote", "action": "solo_change", "params": {}}',
        json.dumps({"action": "crowd_vote", "params": {"s": "x" * 200_000}}).encode(),
    ]
    for raw in bodies:
        for content_type in ("application/json", "text/plain"):
            hdrs = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
            async with stack.http.post(stack.url + "/v1/requests", data=raw, headers=hdrs) as resp:
                assert_error_shape(resp.status, await resp.json(content_type=None), f"{raw[:60]!r}")
    headers_cases = [
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 4000},
        {"Authorization": "Basic " + key},
        {"Authorization": f"Bearer {key}", "Prefer": "wait=-1"},
        {"Authorization": f"Bearer {key}", "Prefer": "wait=99999999999999999999"},
        {"Authorization": f"Bearer {key}", "Prefer": "wait=abc, wait=2"},
    ]
    for hdrs in headers_cases:
        for method, path in (("GET", "/v1/requests/r_nope"), ("POST", "/v1/requests/%00/cancel")):
            async with stack.http.request(method, stack.url + path, headers=hdrs) as resp:
                assert_error_shape(resp.status, await resp.json(content_type=None), f"{method} {path} {hdrs}")
    for method, path in (("DELETE", "/v1/requests/x"), ("PUT", "/v1/requests"), ("GET", "/v1/nothing")):
        async with stack.http.request(method, stack.url + path, headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status in (404, 405)
            assert_error_shape(resp.status, await resp.json(content_type=None), f"{method} {path}")
