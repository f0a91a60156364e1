"""Time and identifiers for the emulator, injectable so tests never sleep through trigger or URL expiry."""

from __future__ import annotations

import itertools
import secrets
import string
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to. Starts at the real time so request signatures stay valid
    (Bolt refuses timestamps more than 5 minutes away from its own clock)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


_ALNUM = string.ascii_uppercase + string.digits


class Ids:
    """Slack-looking identifiers; ``deterministic=True`` gives repeatable ones for tests."""

    def __init__(self, *, deterministic: bool = False) -> None:
        self._deterministic = deterministic
        self._counter = itertools.count(1)
        self._last_micros = 0

    def _chars(self, n: int, alphabet: str = _ALNUM) -> str:
        if self._deterministic:
            value = next(self._counter)
            out = []
            for _ in range(n):
                value, rem = divmod(value, len(alphabet))
                out.append(alphabet[rem])
            return "".join(reversed(out))
        return "".join(secrets.choice(alphabet) for _ in range(n))

    def make(self, prefix: str, length: int = 10) -> str:
        return prefix + self._chars(length)

    def secret(self, length: int = 24) -> str:
        return self._chars(length, string.ascii_letters + string.digits)

    def ts(self, now: float) -> str:
        """A message timestamp: unique and increasing, like Slack's ``"1503435956.000247"``."""
        micros = max(int(now * 1_000_000), self._last_micros + 1)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def trigger_id(self, now: float) -> str:
        return f"{int(now * 1000)}.{self._chars(10, string.digits)}.{self._chars(32, '0123456789abcdef')}"

    def block_id(self) -> str:
        return self._chars(4, string.ascii_letters + string.digits + "+=/")
