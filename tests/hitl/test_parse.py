"""The /hitl parser, table-driven: every verb, mentions, the tenant prefix, errors with a usage line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.commands.command import (
    Help,
    History,
    ListPools,
    Parsed,
    Pending,
    PolicyShow,
    PoolAdd,
    PoolAway,
    PoolChannel,
    PoolCreate,
    PoolRemove,
    PoolShow,
    Show,
    Stats,
    Targets,
    WhoCan,
)
from bot.commands.parse import CommandError, parse, tokenize

T1 = "support_tier_1"

PARSES: list[tuple[str, Parsed]] = [
    ("", Parsed(Help())),
    ("help", Parsed(Help())),
    ("help pool", Parsed(Help("pool"))),
    ("pools", Parsed(ListPools())),
    ("POOLS", Parsed(ListPools())),
    ("acme-support pools", Parsed(ListPools(), "acme-support")),
    ("acme-support", Parsed(Help(), "acme-support")),
    (f"pool show {T1}", Parsed(PoolShow(T1))),
    (f"pool show {T1} at 2025-01-31T09:30Z", Parsed(PoolShow(T1, datetime(2025, 1, 31, 9, 30, tzinfo=UTC)))),
    (f"pool show {T1} at 2025-01-31", Parsed(PoolShow(T1, datetime(2025, 1, 31, tzinfo=UTC)))),
    (
        f"pool show {T1} at 2025-01-31T10:30:00+01:00",
        Parsed(PoolShow(T1, datetime(2025, 1, 31, 9, 30, tzinfo=UTC))),
    ),
    ("pool create night", Parsed(PoolCreate("night"))),
    (
        "pool create night <#C0NIGHT|night-shift> <@U0BEN|ben> <@U0DEV>",
        Parsed(PoolCreate("night", "C0NIGHT", Targets(("U0BEN", "U0DEV")))),
    ),
    ("pool create night #C0NIGHT @U0BEN", Parsed(PoolCreate("night", "C0NIGHT", Targets(("U0BEN",))))),
    (f"pool add {T1} <@U0BEN|ben> <@U0BEN|ben>", Parsed(PoolAdd(T1, Targets(("U0BEN",))))),
    (
        f"pool add {T1} <!subteam^S0REV|@reviewers> <@W0ENT>",
        Parsed(PoolAdd(T1, Targets(("W0ENT",), ("S0REV",)))),
    ),
    ("pool add payload_team <@U0BEN|payload>", Parsed(PoolAdd("payload_team", Targets(("U0BEN",))))),
    (f"pool remove {T1} U0BEN", Parsed(PoolRemove(T1, Targets(("U0BEN",))))),
    (f"pool channel {T1} <#C0NEW>", Parsed(PoolChannel(T1, "C0NEW"))),
    (f"pool channel {T1} none", Parsed(PoolChannel(T1, None))),
    (f"pool away {T1}", Parsed(PoolAway(T1, True))),
    (f"pool back {T1}", Parsed(PoolAway(T1, False))),
    (f"pool away {T1} <@U0BEN|ben>", Parsed(PoolAway(T1, True, Targets(("U0BEN",))))),
    ("pending", Parsed(Pending())),
    (f"pending {T1}", Parsed(Pending(T1))),
    ("show req_01ABC", Parsed(Show("req_01ABC"))),
    ("stats", Parsed(Stats())),
    ("stats 24h", Parsed(Stats(timedelta(hours=24), "24h"))),
    ("stats 30m", Parsed(Stats(timedelta(minutes=30), "30m"))),
    ("stats 2W", Parsed(Stats(timedelta(weeks=2), "2w"))),
    ("policy", Parsed(PolicyShow())),
    ("policy process_refund", Parsed(PolicyShow("process_refund"))),
    ("whocan close_account", Parsed(WhoCan("close_account"))),
    ("whocan process_refund amount=620", Parsed(WhoCan("process_refund", {"amount": 620}))),
    (
        'whocan process_refund amount=620.5 note="two words" ok=true customer.tier=gold customer.id=7 tag=payload',
        Parsed(
            WhoCan(
                "process_refund",
                {
                    "amount": 620.5,
                    "note": "two words",
                    "ok": True,
                    "customer": {"tier": "gold", "id": 7},
                    "tag": "payload",
                },
            )
        ),
    ),
    ("whocan x on_behalf_of=<@U0BEN|ben>", Parsed(WhoCan("x", {}, "U0BEN"))),
    ('whocan x ids=[1,2] meta={"a":1}', Parsed(WhoCan("x", {"ids": [1, 2], "meta": {"a": 1}}))),
    ("history", Parsed(History())),
    ("platform history", Parsed(History(), "platform")),
]


@pytest.mark.parametrize(("text", "expected"), PARSES, ids=[t or "<empty>" for t, _ in PARSES])
def test_parses(text: str, expected: Parsed) -> None:
    assert parse(text) == expected


ERRORS: list[tuple[str, str, str | None]] = [
    # text, in the message, in the usage line
    ("Pools!", "I don't know", "/hitl help"),
    ("pools extra", "Too many words", "/hitl pools"),
    ("pool", "needs one of show, create", "/hitl pool show"),
    ("pool rename x", "back, not `rename`", "/hitl pool show"),
    ("pool add", "Which pool?", "/hitl pool add"),
    ("pool add Tier1 <@U0BEN>", "not a pool name", "/hitl pool add"),
    (f"pool add {T1}", "Whom should I add?", "/hitl pool add"),
    (f"pool add {T1} ben", "`ben` is not a person", "/hitl pool add"),
    (f"pool remove {T1} <#C0X>", "is not a person", "/hitl pool remove"),
    (f"pool channel {T1}", "Name one channel", "/hitl pool channel"),
    (f"pool channel {T1} general", "is not a channel", "/hitl pool channel"),
    (f"pool show {T1} yesterday", "write `at` and a time", "/hitl pool show"),
    (f"pool show {T1} at yesterday", "not an ISO time", "/hitl pool show"),
    ("show", "Which request?", "/hitl show"),
    ("show a b", "Which request?", "/hitl show"),
    ("stats forever", "not a window", "/hitl stats"),
    ("stats 0d", "longer than zero", "/hitl stats"),
    ("stats 400d", "at most a year", "/hitl stats"),
    ("whocan", "Which action?", "/hitl whocan"),
    ("whocan amount=5", "Name the action first", "/hitl whocan"),
    ("whocan x amount", "is not key=value", "/hitl whocan"),
    ("whocan x on_behalf_of=ben", "takes a person", "/hitl whocan"),
    ("whocan x a=1 a.b=2", "already has a value", "/hitl whocan"),
    ("policy a b", "Too many words", "/hitl policy"),
]


@pytest.mark.parametrize(("text", "message", "usage"), ERRORS, ids=[t for t, _, _ in ERRORS])
def test_errors_say_what_and_how(text: str, message: str, usage: str | None) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    assert message in caught.value.message
    assert caught.value.usage is not None and usage is not None and caught.value.usage.startswith(usage)


TOKENS: list[tuple[str, list[Any]]] = [
    ("pool  add   x", ["pool", "add", "x"]),
    ("add <@U1|ada lovelace> y", ["add", "<@U1|ada lovelace>", "y"]),
    ('note="a b" c', ['note="a b"', "c"]),
    ("a\u00a0b", ["a", "b"]),
]


@pytest.mark.parametrize(("text", "words"), TOKENS)
def test_tokenize_keeps_mentions_and_quotes_whole(text: str, words: list[str]) -> None:
    assert tokenize(text) == words
