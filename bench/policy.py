"""Decision cost for a 200-action manifest, against the floor of what a decision must do.

    python -m bench.policy [--actions 200] [--rounds 20000]

Baselines measured in the same run: a hand-written Python ``if`` (the floor of any policy
engine) and the bare compiled CEL program (the floor of ours). Target: well under 50 µs.
"""

from __future__ import annotations

import argparse
import platform
import timeit
from collections.abc import Callable

import cel

from policy import ActionRequest, RequestContext, decide, load_text


def manifest(actions: int) -> str:
    lines = [
        "tenant: bench",
        "defaults: {default_pool: p0, timeout: 10m}",
        "pools:",
        *[f"  p{i}: {{channel: C{i}, members: [U{i}a, U{i}b, U{i}c]}}" for i in range(10)],
        "actions:",
    ]
    for i in range(actions):
        lines += [
            f"  action_{i}:",
            f"    if: amount > {i * 10} && customer.tier != 'enterprise'",
            f"    reviewer_pool: p{i % 10}",
            f"    fallback: p{(i + 1) % 10}",
            f"    escalate_to: p{(i + 2) % 10}",
            "    timeout: 5m",
            "    sensitive: [card]",
            "    summary: 'Refund ${amount} to {customer.name}'",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()

    text = manifest(args.actions)
    load_s = timeit.timeit(lambda: load_text(text, file="bench.yaml"), number=3) / 3
    policy, problems = load_text(text, file="bench.yaml")
    assert policy is not None, problems
    middle = f"action_{args.actions // 2}"
    params = {"amount": 5000, "card": "4111", "customer": {"tier": "pro", "name": "Ana"}}
    review = ActionRequest(tenant="bench", action=middle, params=params, context=RequestContext())
    auto = ActionRequest(tenant="bench", action=middle, params={**params, "amount": 1}, context=RequestContext())
    unknown = ActionRequest(tenant="bench", action="not_there", params=params, context=RequestContext())
    program = cel.compile(f"amount > {args.actions // 2 * 10} && customer.tier != 'enterprise'")
    rules = {f"action_{i}": i * 10 for i in range(args.actions)}

    def floor() -> bool:
        limit = rules[middle]
        return params["amount"] > limit and params["customer"]["tier"] != "enterprise"  # type: ignore[index,operator]

    def time_us(fn: Callable[[], object]) -> float:
        rounds: int = args.rounds
        return timeit.timeit(fn, number=rounds) / rounds * 1e6

    base = time_us(floor)
    rows = [
        ("baseline: hand-written Python if", base),
        ("baseline: bare CEL program.execute", time_us(lambda: program.execute({**params, "params": params}))),
        ("decide: review (condition true)", time_us(lambda: decide(policy, review))),
        ("decide: auto-approve (condition false)", time_us(lambda: decide(policy, auto))),
        ("decide: unknown action", time_us(lambda: decide(policy, unknown))),
    ]
    print(f"policy decision, {args.actions}-action manifest, {args.rounds} rounds, Python {platform.python_version()}")
    print(f"manifest load + compile: {load_s * 1000:.1f} ms\n")
    print(f"| {'case':<40} | {'µs/decision':>11} | {'× baseline':>10} |")
    print(f"|{'-' * 42}|{'-' * 13}|{'-' * 12}|")
    for name, us in rows:
        print(f"| {name:<40} | {us:>11.2f} | {us / base:>10.1f} |")


if __name__ == "__main__":
    main()
