"""Card summaries from the manifest's ``summary`` template, e.g. ``Refund ${amount} to {customer.name}``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from policy.sensitive import MASK

_FIELD = re.compile(r"\{([A-Za-z_][\w.-]*)\}")


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
        path = m.group(1)
        if any(path == s or path.startswith(s + ".") for s in hidden):
            return MASK
        value = lookup(params, path)
        if value is None:
            return "?"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    return _FIELD.sub(fill, template)


def default_summary(action: str, description: str | None, agent_summary: str | None) -> str:
    """What a card says when the manifest has no template."""
    return agent_summary or description or action.replace("_", " ").capitalize()
