"""``countersign-hook claude-code`` without a server: the service is an ``httpx.MockTransport``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from countersign_client.hook import build_parser, claude_code, main, output

URL, KEY = "http://countersign.test", "cs_devbox_abc"
ENV = {"COUNTERSIGN_URL": URL, "COUNTERSIGN_API_KEY": KEY}
INPUT = {
    "session_id": "s-1",
    "cwd": "/home/dev/app",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "rm -rf build"},
    "tool_use_id": "toolu_01",
}


def answering(*answers: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers each call with the next of ``answers``, and the calls it received."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), seen


def hook_answer(decision: str, reason: str, status: str = "approved", rid: str = "r_1") -> httpx.Response:
    headers = {"Countersign-Request-Id": rid, "Countersign-Request-Status": status}
    return httpx.Response(200, json=output(decision, reason), headers=headers)


def run(transport: httpx.MockTransport, *flags: str, env: dict[str, str] | None = None, stdin: str = "") -> Any:
    """What ``countersign-hook claude-code FLAGS`` prints (parsed), checking it exits 0 with one JSON line."""
    out = io.StringIO()
    code = main(
        ["claude-code", *flags],
        stdin=io.StringIO(stdin or json.dumps(INPUT)),
        stdout=out,
        env=ENV if env is None else env,
        transport=transport,
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def verdict(printed: Any) -> tuple[str, str]:
    out = printed["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse"
    return out["permissionDecision"], out["permissionDecisionReason"]


def test_it_posts_the_hook_input_with_the_key_and_prints_the_answer() -> None:
    transport, seen = answering(hook_answer("allow", "approved by U0KIM in Countersign (request r_1)"))
    assert verdict(run(transport)) == ("allow", "approved by U0KIM in Countersign (request r_1)")
    (request,) = seen
    assert str(request.url.copy_with(query=None)) == URL + "/v1/hooks/claude-code"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert dict(request.url.params) == {"wait": "50", "on_pending": "deny"}
    assert json.loads(request.content) == INPUT


def test_flags_win_over_the_environment_and_set_the_wait_and_the_pending_answer() -> None:
    transport, seen = answering(hook_answer("ask", "no reviewer yet", status="pending"))
    printed = run(transport, "--url", "http://other.test/", "--key", "cs_k", "--wait", "0", "--on-pending", "ask")
    assert verdict(printed)[0] == "ask"
    (request,) = seen
    assert request.url.host == "other.test" and request.headers["Authorization"] == "Bearer cs_k"
    assert dict(request.url.params) == {"wait": "0", "on_pending": "ask"}


def test_while_pending_it_asks_again_with_the_same_input_until_the_wait_is_over() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        now[0] += float(request.url.params["wait"])  # the service held the call for its wait
        if len(seen) < 3:
            return hook_answer("deny", "pending (request r_1)", status="pending")
        return hook_answer("deny", "rejected by U0KIM: not on Fridays", status="rejected")

    seen: list[httpx.Request] = []
    args = build_parser().parse_args(["claude-code", "--wait", "120"])
    printed = claude_code(json.dumps(INPUT), args, env=ENV, transport=httpx.MockTransport(handle), clock=clock)
    assert verdict(printed) == ("deny", "rejected by U0KIM: not on Fridays")
    assert [r.url.params["wait"] for r in seen] == ["50", "50", "20"]
    assert all(json.loads(r.content) == INPUT for r in seen)  # the same call: the service finds its request


def test_still_pending_when_the_wait_is_over_prints_the_services_answer() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def handle(request: httpx.Request) -> httpx.Response:
        now[0] += float(request.url.params["wait"])
        return hook_answer("deny", "Not run: pending (Countersign request r_9)", status="pending", rid="r_9")

    args = build_parser().parse_args(["claude-code", "--wait", "30"])
    printed = claude_code(json.dumps(INPUT), args, env=ENV, transport=httpx.MockTransport(handle), clock=clock)
    assert verdict(printed) == ("deny", "Not run: pending (Countersign request r_9)")


def test_an_async_action_allowed_while_pending_is_not_asked_again() -> None:
    transport, seen = answering(hook_answer("allow", "allowed now, reviewed in Slack afterwards", status="pending"))
    assert verdict(run(transport))[0] == "allow"
    assert len(seen) == 1


def test_a_service_answering_pending_at_once_is_not_asked_in_a_busy_loop() -> None:
    now, slept = [0.0], []

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    transport, seen = answering(hook_answer("deny", "pending", status="pending"))
    args = build_parser().parse_args(["claude-code", "--wait", "5"])
    claude_code(json.dumps(INPUT), args, env=ENV, transport=transport, clock=clock, sleep=sleep)
    assert len(seen) == len(slept) + 1 <= 6


Case = Callable[[], httpx.MockTransport]


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (httpx.ConnectError("connection refused"), f"no answer from {URL}: connection refused"),
        (httpx.ReadTimeout("timed out"), "timed out"),
        (
            httpx.Response(401, json={"error": {"code": "unauthorized", "message": "unknown or revoked API key"}}),
            "401 unauthorized: unknown or revoked API key",
        ),
        (
            httpx.Response(422, json={"error": {"code": "invalid", "message": "only PreToolUse hook input"}}),
            "422 invalid: only PreToolUse",
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), "answered 502"),
        (httpx.Response(200, json={"ok": True}), "not hook output"),
    ],
)
def test_no_answer_or_an_error_is_a_deny_naming_the_problem(answer: httpx.Response | Exception, said: str) -> None:
    transport, _ = answering(answer)
    decision, reason = verdict(run(transport))
    assert decision == "deny" and said in reason and "Countersign" in reason


def test_on_unreachable_ask_hands_the_decision_to_the_person_at_the_terminal() -> None:
    transport, _ = answering(httpx.ConnectError("connection refused"))
    decision, reason = verdict(run(transport, "--on-unreachable", "ask"))
    assert decision == "ask" and "connection refused" in reason


def test_without_a_url_or_key_it_denies_and_says_what_to_set() -> None:
    transport, seen = answering(hook_answer("allow", "x"))
    decision, reason = verdict(run(transport, env={}))
    assert decision == "deny" and "COUNTERSIGN_URL" in reason and "COUNTERSIGN_API_KEY" in reason
    assert seen == []


def test_stdin_that_is_not_json_is_denied_without_a_call() -> None:
    transport, seen = answering(hook_answer("allow", "x"))
    decision, reason = verdict(run(transport, stdin="{nope"))
    assert decision == "deny" and "not JSON" in reason
    assert seen == []


def test_a_wait_that_is_not_whole_seconds_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["claude-code", "--wait", "soon"])
    assert exit_.value.code == 2
