"""``/hitl`` text into typed commands. Pure: a string in, a command (or a helpful error) out.

Slack escapes what people type in a slash command (``should_escape: true`` in app.yaml)::

    <@U0BEN|ben>            a person             -> "U0BEN"
    <#C0SUPPORT1|support>   a channel            -> "C0SUPPORT1"
    <!subteam^S0REV|@rev>   a user group         -> kept apart: the Slack edge expands it to members

Bare ids (``U0BEN``, ``@U0BEN``, ``C0SUPPORT1``) are accepted too, so the command can be typed
where nothing is escaped (the emulator, a script). The first word may be a tenant name
(``/hitl acme-support pools``); anything that is not a verb there is read as one.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bot.commands import policy_commands
from bot.commands.command import (
    Command,
    Delegate,
    DelegateOff,
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

NAME = re.compile(r"^[a-z0-9_-]{1,64}$")
_TOKEN = re.compile(r"""(?:<[^>]*>|"[^"]*"|'[^']*'|[^\s"'<])+""")
_USER = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$|^@?([UW][A-Z0-9]{2,})$")
_CHANNEL = re.compile(r"^<#([CG][A-Z0-9]+)(?:\|[^>]*)?>$|^#?([CG][A-Z0-9]{2,})$")
_SUBTEAM = re.compile(r"^<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>$")
_WINDOW = re.compile(r"^(\d+)\s*([mhdw])$")
_WINDOW_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_WINDOW = timedelta(days=366)

USAGE: dict[str, str] = {
    "help": "/hitl help",
    "pools": "/hitl pools",
    "pool show": "/hitl pool show <pool> [at <ISO time, e.g. 2025-01-31T09:30Z>]",
    "pool create": "/hitl pool create <pool> [#channel] [@person ...]",
    "pool add": "/hitl pool add <pool> @person|@group [...]",
    "pool remove": "/hitl pool remove <pool> @person [...]",
    "pool channel": "/hitl pool channel <pool> #channel|none",
    "pool away": "/hitl pool away <pool> [@person ...]   (no one named: you)",
    "pool back": "/hitl pool back <pool> [@person ...]   (no one named: you)",
    "pending": "/hitl pending [pool]",
    "show": "/hitl show <request id>",
    "stats": "/hitl stats [window, e.g. 24h, 7d, 4w]",
    "policy": "/hitl policy [action]",
    **policy_commands.USAGE,
    "whocan": "/hitl whocan <action> [key=value ...]   (values are JSON when they parse: amount=620)",
    "history": "/hitl history",
    "delegate": "/hitl delegate @person [until <date, e.g. 2026-12-24>]   |   /hitl delegate off",
    "audit": "/hitl audit [action:<action>] [by:@person] [outcome:approved|rejected|…] [since:7d|2026-12-01]",
}
VERBS = frozenset(
    {"help", "pools", "pool", "pending", "show", "stats", "policy", "whocan", "history", "delegate", "audit"}
)
POOL_VERBS = ("show", "create", "add", "remove", "channel", "away", "back")


class CommandError(ValueError):
    """What was typed cannot be read; ``usage`` is the line that shows how to type it."""

    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


def tokenize(text: str) -> list[str]:
    """Words, keeping ``<...>`` mentions and quoted strings whole (``reason="two words"`` is one word)."""
    return _TOKEN.findall(text.replace("\u00a0", " "))


def unknown_word(word: str) -> str:
    """What to tell someone whose first word is neither a command nor one of their tenants."""
    close = difflib.get_close_matches(word.lower(), sorted(VERBS), n=1)
    hint = f" Did you mean `/hitl {close[0]}`?" if close else " See `/hitl help`."
    return f"I don't know `{_show(word)}`: it is not a command, nor a tenant of yours.{hint}"


def parse(text: str) -> Parsed:
    """Read a ``/hitl`` line.

    Raises:
        CommandError: unknown verb, missing or malformed argument (with the usage line).
    """
    words = tokenize(text.strip())
    tenant = None
    if words and words[0].lower() not in VERBS:
        first = words[0]
        if not NAME.fullmatch(first):
            raise CommandError(f"I don't know `{_show(first)}`. Try `/hitl help`.", USAGE["help"])
        tenant, words = first, words[1:]
    if not words:
        return Parsed(Help(), tenant)
    verb, args = words[0].lower(), words[1:]
    return Parsed(_command(verb, args), tenant)


def _command(verb: str, args: list[str]) -> Command:
    if verb == "help":
        return Help(" ".join(args).lower() or None)
    if verb == "pools":
        _no_more(args, "pools")
        return ListPools()
    if verb == "pool":
        return _pool(args)
    if verb == "pending":
        _at_most(args, 1, "pending")
        return Pending(_pool_name(args[0], "pending") if args else None)
    if verb == "show":
        if len(args) != 1:
            raise CommandError("Which request? Give its id (it is on the card).", USAGE["show"])
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", args[0]):
            raise CommandError(f"`{_show(args[0])}` is not a request id.", USAGE["show"])
        return Show(args[0])
    if verb == "stats":
        _at_most(args, 1, "stats")
        return Stats() if not args else parse_window(args[0])
    if verb == "policy":
        if args and args[0].lower() in policy_commands.SUBVERBS:
            return policy_commands.parse_policy_change(args)
        _at_most(args, 1, "policy")
        return PolicyShow(args[0] if args else None)
    if verb == "whocan":
        return _whocan(args)
    if verb == "delegate":
        return _delegate(args)
    if verb == "audit":
        # Imported here: the audit filters reuse this module's mentions and times (an import cycle otherwise).
        from bot.commands.audit import parse_audit

        return parse_audit(args)
    _no_more(args, "history")
    return History()


def _pool(args: list[str]) -> Command:
    if not args or args[0].lower() not in POOL_VERBS:
        got = f" `{_show(args[0])}`" if args else ""
        raise CommandError(
            f"`/hitl pool` needs one of {', '.join(POOL_VERBS)}{got and ', not' + got}.", USAGE["pool show"]
        )
    sub, rest = args[0].lower(), args[1:]
    usage = USAGE[f"pool {sub}"]
    if not rest:
        raise CommandError("Which pool?", usage)
    pool, rest = _pool_name(rest[0], f"pool {sub}"), rest[1:]
    if sub == "show":
        if not rest:
            return PoolShow(pool)
        if rest[0].lower() != "at" or len(rest) != 2:
            raise CommandError("To see a pool in the past, write `at` and a time.", usage)
        return PoolShow(pool, parse_time(rest[1]))
    if sub == "create":
        channel = None
        if rest and (c := channel_id(rest[0])):
            channel, rest = c, rest[1:]
        return PoolCreate(pool, channel, _targets(rest, usage))
    if sub in ("add", "remove"):
        targets = _targets(rest, usage)
        if not targets:
            raise CommandError(f"Whom should I {sub}? Mention them with @.", usage)
        return PoolAdd(pool, targets) if sub == "add" else PoolRemove(pool, targets)
    if sub == "channel":
        if len(rest) != 1:
            raise CommandError("Name one channel (or `none`).", usage)
        if rest[0].lower() in ("none", "-"):
            return PoolChannel(pool, None)
        channel = channel_id(rest[0])
        if channel is None:
            raise CommandError(f"`{_show(rest[0])}` is not a channel; mention it with #.", usage)
        return PoolChannel(pool, channel)
    return PoolAway(pool, sub == "away", _targets(rest, usage))


def _delegate(args: list[str]) -> Delegate | DelegateOff:
    usage = USAGE["delegate"]
    if not args:
        raise CommandError("Whom should vote for you while you are away? Mention them with @.", usage)
    if args[0].lower() == "off":
        _no_more(args[1:], "delegate")
        return DelegateOff()
    who = user_id(args[0])
    if who is None:
        raise CommandError(f"`{_show(args[0])}` is not a person: mention one with @ (not a group).", usage)
    rest = args[1:]
    if not rest:
        return Delegate(who)
    if rest[0].lower() != "until" or len(rest) != 2:
        raise CommandError("After the person, only `until` and a date may follow.", usage)
    try:
        until = date.fromisoformat(rest[1])
    except ValueError as exc:
        raise CommandError(f"`{_show(rest[1])}` is not a date; write e.g. 2026-12-24.", usage) from exc
    return Delegate(who, until)


def _whocan(args: list[str]) -> WhoCan:
    if not args:
        raise CommandError("Which action?", USAGE["whocan"])
    action, on_behalf_of = args[0], None
    params: dict[str, Any] = {}
    if "=" in action:
        raise CommandError("Name the action first, then its params.", USAGE["whocan"])
    for arg in args[1:]:
        key, eq, raw = arg.partition("=")
        if not eq or not key:
            raise CommandError(f"`{_show(arg)}` is not key=value.", USAGE["whocan"])
        if key == "on_behalf_of":
            on_behalf_of = user_id(_unquote(raw))
            if on_behalf_of is None:
                raise CommandError("on_behalf_of takes a person (@mention).", USAGE["whocan"])
            continue
        _set_path(params, key, parse_value(raw))
    return WhoCan(action, params, on_behalf_of)


def _set_path(params: dict[str, Any], key: str, value: Any) -> None:
    """``customer.tier=gold`` sets ``{"customer": {"tier": "gold"}}``."""
    node = params
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise CommandError(f"`{key}` sets a field inside `{part}`, which already has a value.", USAGE["whocan"])
        node = child
    node[parts[-1]] = value


def parse_value(raw: str) -> Any:
    """JSON when it parses (``620``, ``true``, ``{"a": 1}``), else the text itself (quotes removed)."""
    text = _unquote(raw)
    if text != raw:
        return text
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_window(raw: str) -> Stats:
    match = _WINDOW.fullmatch(raw.strip().lower())
    if not match:
        raise CommandError(f"`{_show(raw)}` is not a window; write e.g. 24h, 7d or 4w.", USAGE["stats"])
    n, unit = int(match.group(1)), match.group(2)
    window = timedelta(**{_WINDOW_UNITS[unit]: n})
    if not timedelta(0) < window <= MAX_WINDOW:
        raise CommandError("The window must be longer than zero and at most a year.", USAGE["stats"])
    return Stats(window, f"{n}{unit}")


def parse_time(raw: str) -> datetime:
    """An ISO 8601 time or date; without a zone it is UTC."""
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(
            f"`{_show(raw)}` is not an ISO time; write e.g. 2025-01-31T09:30Z.", USAGE["pool show"]
        ) from exc
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def user_id(word: str) -> str | None:
    match = _USER.fullmatch(word)
    return (match.group(1) or match.group(2)) if match else None


def channel_id(word: str) -> str | None:
    match = _CHANNEL.fullmatch(word)
    return (match.group(1) or match.group(2)) if match else None


def _targets(words: list[str], usage: str) -> Targets:
    users: list[str] = []
    groups: list[str] = []
    for word in words:
        if (user := user_id(word)) is not None:
            users.append(user)
        elif (group := _SUBTEAM.fullmatch(word)) is not None:
            groups.append(group.group(1))
        else:
            raise CommandError(
                f"`{_show(word)}` is not a person in this workspace: pick them from Slack's @ list as you type.",
                usage,
            )
    return Targets(tuple(dict.fromkeys(users)), tuple(dict.fromkeys(groups)))


def _pool_name(word: str, usage_key: str) -> str:
    if not NAME.fullmatch(word):
        raise CommandError(
            f"`{_show(word)}` is not a pool name (lowercase letters, digits, `_` and `-`).", USAGE[usage_key]
        )
    return word


def _no_more(args: list[str], usage_key: str) -> None:
    _at_most(args, 0, usage_key)


def _at_most(args: list[str], n: int, usage_key: str) -> None:
    if len(args) > n:
        raise CommandError(f"Too many words after `{usage_key}`: `{_show(' '.join(args[n:]))}`.", USAGE[usage_key])


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    return raw


def _show(word: str) -> str:
    """A word echoed back in a message: short, and without backticks that would break the code span."""
    word = word.replace("`", "'")
    return word if len(word) <= 60 else word[:59] + "…"
