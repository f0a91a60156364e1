"""``countersign-hook claude-code``: Claude Code's ``PreToolUse`` command hook, stdin to stdout.

Reads the hook input Claude Code writes on stdin, posts it to the service's
``POST /v1/hooks/claude-code`` and prints the hook output the service answers
(``allow``, ``deny`` or ``ask``), exiting 0. While a reviewer has not decided, it asks again
with the same input (which finds the same request) until ``--wait`` seconds have passed.

It fails closed: when the service cannot be reached, or answers an error, it prints a ``deny``
naming the problem (``--on-unreachable ask`` hands the decision to the person at the terminal
instead). It never exits non-zero for such a problem, since Claude Code lets a tool call through
when a command hook fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import httpx

from countersign_client.config import endpoint
from countersign_client.errors import ConfigurationError

PATH = "/v1/hooks/claude-code"
EVENT = "PreToolUse"
# The service holds one call at most 60 s; each call asks for this much, and the hook asks again.
CALL_WAIT = 50
DEFAULT_WAIT = 50
# Beyond the wait: the time a call may take to connect, be recorded and answer.
SLACK_SECONDS = 15.0


def output(decision: str, reason: str) -> dict[str, Any]:
    """Claude Code's ``PreToolUse`` hook output."""
    return {
        "hookSpecificOutput": {
            "hookEventName": EVENT,
            "permissionDecision": decision,
            "permissionDecisionReason": reason,
        }
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="countersign-hook", description="Agent hooks that ask Countersign before a tool runs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="AGENT")
    claude = commands.add_parser(
        "claude-code",
        help="Claude Code's PreToolUse command hook: hook input on stdin, hook output on stdout",
        description="Claude Code's PreToolUse command hook: hook input on stdin, hook output on stdout.",
    )
    claude.add_argument("--url", help="the service's URL (else $COUNTERSIGN_URL)")
    claude.add_argument("--key", help="the tenant's agent API key (else $COUNTERSIGN_API_KEY)")
    claude.add_argument(
        "--wait",
        type=_seconds,
        default=DEFAULT_WAIT,
        help=f"seconds to wait for a reviewer (default {DEFAULT_WAIT}); keep it below the hook's timeout",
    )
    claude.add_argument(
        "--on-pending",
        choices=("deny", "ask"),
        default="deny",
        help="the answer when no reviewer decided within --wait (default deny)",
    )
    claude.add_argument(
        "--on-unreachable",
        choices=("deny", "ask"),
        default="deny",
        help="the answer when the service cannot be reached or answers an error (default deny)",
    )
    return parser


def _seconds(text: str) -> int:
    if not text.isdecimal():
        raise argparse.ArgumentTypeError(f"whole seconds, not {text!r}")
    return int(text)


class _Problem(Exception):
    """Why there is no answer from the service: becomes the ``--on-unreachable`` answer."""


def claude_code(
    hook_input: str,
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The hook output for ``hook_input`` (Claude Code's JSON): the service's answer, else the fallback."""
    try:
        return _ask(hook_input, args, env=env, transport=transport, clock=clock, sleep=sleep)
    except _Problem as exc:
        if args.on_unreachable == "ask":
            return output("ask", f"Countersign could not decide this ({exc}); decide here whether it runs")
        return output("deny", f"Not run: Countersign could not decide this ({exc})")


def _ask(
    hook_input: str,
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None,
    transport: httpx.BaseTransport | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    try:
        where = endpoint(args.url, args.key, env)
    except ConfigurationError as exc:
        raise _Problem(str(exc)) from exc
    try:
        body = json.loads(hook_input)
    except ValueError as exc:
        raise _Problem(f"the hook input on stdin is not JSON: {exc}") from exc
    url = where.url + PATH
    headers = {"Authorization": f"Bearer {where.api_key}"}
    deadline = clock() + args.wait
    with httpx.Client(transport=transport, timeout=min(args.wait, CALL_WAIT) + SLACK_SECONDS) as http:
        while True:
            asked = clock()
            wait = max(0, min(CALL_WAIT, round(deadline - asked)))
            params = {"wait": str(wait), "on_pending": args.on_pending}
            try:
                resp = http.post(url, json=body, params=params, headers=headers)
            except httpx.HTTPError as exc:
                raise _Problem(f"no answer from {where.url}: {str(exc) or type(exc).__name__}") from exc
            answer = _answer(resp)
            pending = resp.headers.get("Countersign-Request-Status") == "pending"
            decided = answer["hookSpecificOutput"]["permissionDecision"] == "allow"  # async: allowed at once
            if not pending or decided or deadline - clock() < 1:
                return answer
            if clock() - asked < wait - 0.5:  # answered before its wait (a service shutting down): no busy loop
                sleep(1)


def _answer(resp: httpx.Response) -> dict[str, Any]:
    """The hook output in a 2xx answer. Raises _Problem for an error or anything else."""
    try:
        data: Any = resp.json()
    except ValueError:
        data = None
    if not resp.is_success:
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise _Problem(f"the service answered {resp.status_code} {error.get('code')}: {error.get('message')}")
        raise _Problem(f"the service answered {resp.status_code}")
    out = data.get("hookSpecificOutput") if isinstance(data, dict) else None
    if not isinstance(out, dict) or out.get("permissionDecision") not in ("allow", "deny", "ask"):
        raise _Problem(f"the service's answer is not hook output: {resp.text[:200]!r}")
    return {"hookSpecificOutput": out}


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    hook_input = (stdin or sys.stdin).read()
    answer = claude_code(hook_input, args, env=env, transport=transport)
    out = stdout or sys.stdout
    out.write(json.dumps(answer) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
