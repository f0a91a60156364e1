"""Card summaries from the manifest's ``summary`` template, e.g. ``Refund ${amount} to {customer.name}``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from policy.sensitive import MASK

_FIELD = re.compile(r"(\$)?\{([A-Za-z_][\w.-]*)\}")
# "${amount}" is money: written in the request's currency when its params carry one (a currency field
# beside the amount, or at the top), not in dollars whatever it is.
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def lookup(params: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    node: Any = params
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def render(template: str, params: Mapping[str, Any], sensitive: Iterable[str] = ()) -> str:
    """Fill ``{field}`` placeholders from params; sensitive fields are masked, missing ones shown as ``?``."""
    hidden = tuple(sensitive)

    def fill(m: re.Match[str]) -> str:
        dollar, path = m.group(1) or "", m.group(2)
        if any(path == s or path.startswith(s + ".") for s in hidden):
            return dollar + MASK
        value = lookup(params, path)
        if value is None:
            return dollar + "?"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return _money(str(value), _currency(params, path)) if dollar else str(value)

    return _FIELD.sub(fill, template)


def _currency(params: Mapping[str, Any], path: str) -> str | None:
    parent = path.rpartition(".")[0]
    for where in (f"{parent}.currency" if parent else "currency", "currency"):
        found = lookup(params, where)
        if isinstance(found, str) and found.strip():
            return found.strip().upper()
    return None


def _money(amount: str, currency: str | None) -> str:
    if currency is None:
        return "$" + amount
    symbol = _SYMBOLS.get(currency)
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"


def default_summary(action: str, description: str | None, agent_summary: str | None) -> str:
    """What a card says when the manifest has no template."""
    return agent_summary or description or action.replace("_", " ").capitalize()
