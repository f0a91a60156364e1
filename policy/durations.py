"""Durations as people write them in manifests: ``90s``, ``5m``, ``4h``, ``2d``, ``5 minutes``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``5m``, ``1h30m``, ``4 hours``, ``30 seconds``, ``2d``.

    Raises:
        ValueError: with a message that says what is accepted.
    """
    s = text.strip().lower()
    if s.startswith("-"):
        raise ValueError(f"duration {text!r} is negative; it must be positive")
    if not s:
        raise _unreadable(text)
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or m.group(2) not in _UNITS:
            raise _unreadable(text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if total <= 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    return timedelta(seconds=total)


def _unreadable(text: str) -> ValueError:
    return ValueError(f"cannot read duration {text!r}; write e.g. 90s, 5m, 4h, 2d or '5 minutes'")


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling: ``5m``, ``1h30m``, ``90s`` → ``1m30s``."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
