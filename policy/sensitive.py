"""Sensitive params: masked on cards, replaced by a digest in the audit log.

Paths are dotted (``customer.email``); a path that names a list applies to each element's
field (``cards.number`` masks ``number`` in every item of ``cards``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "••••••"


def canonical_json(value: Any) -> str:
    """One byte-exact JSON spelling of a value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_sha256(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of a value: equal for equal values, whatever the key order."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of a value."""
    return "sha256:" + canonical_sha256(value)


def params_sha256(action: str, params: Mapping[str, Any]) -> str:
    """What a decision approves: the digest of the exact action and params asked for."""
    return canonical_sha256({"action": action, "params": params})


def mask(params: Mapping[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    """A copy of ``params`` with every sensitive value replaced by a fixed mask (for Slack)."""
    return _replace(params, [p.split(".") for p in sensitive], lambda _v: MASK)


def redact(params: Mapping[str, Any], sensitive: Iterable[str]) -> dict[str, Any]:
    """A copy of ``params`` with every sensitive value replaced by its digest (for the audit log)."""
    return _replace(params, [p.split(".") for p in sensitive], digest)


def _replace(params: Mapping[str, Any], paths: list[list[str]], repl: Callable[[Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(params)
    for path in paths:
        out = _replace_path(out, path, repl)
    return out


def _replace_path(node: Any, path: list[str], repl: Callable[[Any], Any]) -> Any:
    if isinstance(node, list):
        return [_replace_path(item, path, repl) for item in node]
    if not isinstance(node, Mapping) or path[0] not in node:
        return node
    head, rest = path[0], path[1:]
    copy = dict(node)
    copy[head] = repl(node[head]) if not rest else _replace_path(node[head], rest, repl)
    return copy
