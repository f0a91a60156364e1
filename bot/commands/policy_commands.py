"""``/hitl policy set|add|rollback|approve|refuse``: changes to a tenant's policy, proposed from Slack.

Read here into typed commands (pure); run by :mod:`bot.commands.policy_changes`. The words::

    /hitl policy set <action> if "<CEL>" | threshold N | approvals N | pool <name> | chain <a> > <b> > <c>
                             | timeout 10m | mode sync|async
    /hitl policy add <action> pool <name>
    /hitl policy rollback <version>
    /hitl policy approve <change>   /   /hitl policy refuse <change>

Kept apart from :mod:`bot.commands.parse` (it imports these types; the parsing imports its errors lazily).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Any

SUBVERBS = ("set", "add", "rollback", "approve", "refuse")
SETTINGS = ("if", "threshold", "approvals", "pool", "chain", "timeout", "mode")
CHAIN_LIMIT = 3  # reviewer_pool, fallback, escalate_to
USAGE: dict[str, str] = {
    "policy set": '/hitl policy set <action> if "<condition>" | threshold N | approvals N | pool <pool>'
    " | chain <pool> > <fallback> > <escalation> | timeout <e.g. 10m> | mode sync|async",
    "policy add": "/hitl policy add <action> pool <pool>",
    "policy rollback": "/hitl policy rollback <version>",
    "policy approve": "/hitl policy approve <change number>   |   /hitl policy refuse <change number>",
}
_ACTION = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_POOL = re.compile(r"^[a-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class PolicyEdit:
    """Set one key of an action (``add``: a new action, with its pool)."""

    action: str
    key: str  # one of SETTINGS
    value: Any
    add: bool = False


@dataclass(frozen=True, slots=True)
class PolicyRollback:
    version: int


@dataclass(frozen=True, slots=True)
class PolicyDecide:
    change: int
    approve: bool


PolicyChangeCommand = PolicyEdit | PolicyRollback | PolicyDecide


def parse_policy_change(args: list[str]) -> PolicyChangeCommand:
    """``args`` after ``policy``, starting with one of :data:`SUBVERBS`. Raises CommandError."""
    from bot.commands.parse import CommandError

    sub, rest = args[0].lower(), args[1:]
    if sub in ("approve", "refuse"):
        if len(rest) != 1 or not rest[0].lstrip("#").isdigit():
            raise CommandError("Which change? Give its number (it is in the message that asks you).",
                               USAGE["policy approve"])  # fmt: skip
        return PolicyDecide(int(rest[0].lstrip("#")), sub == "approve")
    if sub == "rollback":
        if len(rest) != 1 or not rest[0].lstrip("v").isdigit() or int(rest[0].lstrip("v")) < 1:
            raise CommandError("Which version? Give its number (`countersign policy versions`).",
                               USAGE["policy rollback"])  # fmt: skip
        return PolicyRollback(int(rest[0].lstrip("v")))
    usage = USAGE[f"policy {sub}"]
    if len(rest) < 3:
        raise CommandError("Name the action, what to set and its value.", usage)
    action, key, words = rest[0], rest[1].lower(), rest[2:]
    if sub == "add":
        if key != "pool" or len(words) != 1:
            raise CommandError("A new action needs its reviewer pool: `pool <pool>`.", usage)
        return added_action(action, words[0], usage)
    if not _ACTION.fullmatch(action):
        raise CommandError(f"`{action[:40]}` is not an action name.", usage)
    if key not in SETTINGS:
        raise CommandError(f"I cannot set `{key[:40]}`; one of {', '.join(SETTINGS)}.", usage)
    if key in ("if", "chain"):
        # Slack escapes <, > and & in a command's text; the condition (and a chain's arrows) mean them.
        return setting_edit(action, key, html.unescape(" ".join(words)), usage)
    if len(words) != 1:
        raise CommandError(f"`{key}` takes one value.", usage)
    return setting_edit(action, key, words[0], usage)


def setting_edit(action: str, key: str, value: str, usage: str = USAGE["policy set"]) -> PolicyEdit:
    """``key`` of ``action`` set to ``value`` as written (a command's words, or the App Home form's field).
    Raises CommandError saying what is wrong with the value."""
    from bot.commands.parse import CommandError

    word = value.strip()
    if key == "if":
        if len(word) >= 2 and word[0] == word[-1] and word[0] in "\"'":
            word = word[1:-1].strip()
        if not word:
            raise CommandError('Give the condition, in quotes: `if "amount > 700"`.', usage)
        return PolicyEdit(action, key, word)
    if key == "chain":
        pools = [p for p in re.split(r"\s*(?:->|>|→|,)\s*|\s+", word) if p]
        if not 1 <= len(pools) <= CHAIN_LIMIT:
            raise CommandError("A chain is one to three pools, first to last: `support_tier_1 > support_tier_2 > "
                               "senior_support` (the first pool, its fallback, then escalation).", usage)  # fmt: skip
        return PolicyEdit(action, key, tuple(_pool(p, usage) for p in pools))
    if not word or len(word.split()) != 1:
        raise CommandError(f"`{key}` takes one value.", usage)
    if key == "threshold":
        try:
            number = float(word)
        except ValueError:
            raise CommandError(f"`{word[:40]}` is not a number.", usage) from None
        if not math.isfinite(number):
            raise CommandError(f"`{word[:40]}` is not a number a threshold can be.", usage)
        return PolicyEdit(action, key, int(number) if number.is_integer() else number)
    if key == "approvals":
        if not word.isdigit() or not 1 <= int(word) <= 50:
            raise CommandError("approvals takes a whole number from 1 to 50.", usage)
        return PolicyEdit(action, key, int(word))
    if key == "pool":
        return PolicyEdit(action, key, _pool(word, usage))
    if key == "mode":
        if word.lower() not in ("sync", "async"):
            raise CommandError("mode is `sync` or `async`.", usage)
        return PolicyEdit(action, key, word.lower())
    return PolicyEdit(action, key, word)  # timeout: read by the manifest's own rules when validated


def added_action(action: str, pool: str, usage: str = USAGE["policy add"]) -> PolicyEdit:
    """A new action reviewed by ``pool``. Raises CommandError for a name that is not an action's or a pool's."""
    from bot.commands.parse import CommandError

    if not _ACTION.fullmatch(action):
        raise CommandError(f"`{action[:40]}` is not an action name (letters, digits and _ . : -).", usage)
    return PolicyEdit(action, "pool", _pool(pool, usage), add=True)


def _pool(word: str, usage: str) -> str:
    from bot.commands.parse import CommandError

    if not _POOL.fullmatch(word):
        raise CommandError(f"`{word[:40]}` is not a pool name.", usage)
    return word
