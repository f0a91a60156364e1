"""The manifest's field types and the strict base model every manifest section uses.

Every model refuses unknown keys with a "did you mean" hint and maps the seed documents' synonyms
to their canonical names, so nothing downstream sees them.
"""

from __future__ import annotations

import difflib
import math
from datetime import timedelta
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from policy.durations import parse_duration

NAME = r"^[a-z0-9_-]+$"


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise PydanticCustomError("duration", "duration must be longer than zero")
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise PydanticCustomError(
            "duration", "a duration needs a unit: write e.g. 90s, 5m, 4h, 2d or '5 minutes' (got {value})",
            {"value": repr(value)},
        )  # fmt: skip
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from exc


Duration = Annotated[timedelta, BeforeValidator(_duration)]

# How long a signed decision receipt is good for (docs/receipts.md): a go-ahead, not a certificate.
DEFAULT_RECEIPT_TTL = timedelta(minutes=15)
MAX_RECEIPT_TTL = timedelta(days=30)


def _receipt_ttl(value: Any) -> Any:
    ttl = _duration(value)
    if isinstance(ttl, timedelta) and ttl > MAX_RECEIPT_TTL:
        raise PydanticCustomError(
            "duration", "receipt_ttl is at most 30d (got {value})", {"value": value, "key": "receipt_ttl"}
        )
    return ttl


ReceiptTtl = Annotated[timedelta, BeforeValidator(_receipt_ttl)]


def fraction_or_duration(value: Any) -> Any:
    """``remind_at: 50%`` (of the stage's time) or ``remind_at: 2m`` (after the stage opens)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError as exc:
            raise PydanticCustomError("remind_at", "cannot read percentage {value}", {"value": repr(value)}) from exc
        if not 0 < pct < 100:
            raise PydanticCustomError(
                "remind_at", "remind_at must be between 0% and 100% (got {value})", {"value": value}
            )
        return pct / 100
    if value is False or value is None:
        return None
    return _duration(value)


class Strict(BaseModel):
    """Base: frozen, refuses unknown keys (with hints), maps synonyms to canonical names."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # synonym -> canonical field name; both given is an error.
    synonyms: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _strict_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, canonical in cls.synonyms.items():
            if alias in data:
                if canonical in data:
                    raise PydanticCustomError(
                        "synonym_conflict", "'{alias}' and '{canonical}' mean the same thing; keep one",
                        {"alias": alias, "canonical": canonical, "key": alias},
                    )  # fmt: skip
                data[canonical] = data.pop(alias)
        known = cls.known_keys()
        unknown = [k for k in data if k not in known]
        if unknown:
            key = str(unknown[0])
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise PydanticCustomError("unknown_key", "unknown key '{key}'{hint}", {"key": key, "hint": hint})
        return data

    @classmethod
    def known_keys(cls) -> set[str]:
        keys = set(cls.synonyms)
        for name, info in cls.model_fields.items():
            keys.add(info.alias or name)
        return keys


def _per_second(value: Any) -> Any:
    """A positive number: requests per second, or a bucket's size."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise PydanticCustomError("rate_limit", "must be a positive number (got {value})", {"value": repr(value)})
    return float(value)


PerSecond = Annotated[float, BeforeValidator(_per_second)]


def read_timeout_minutes(data: Any) -> Any:
    """``timeout_minutes: 15`` is ``timeout: 15m``."""
    if isinstance(data, dict) and "timeout_minutes" in data:
        if "timeout" in data:
            raise PydanticCustomError(
                "synonym_conflict", "'timeout_minutes' and 'timeout' mean the same thing; keep one",
                {"key": "timeout_minutes"},
            )  # fmt: skip
        data = dict(data)
        minutes = data.pop("timeout_minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise PydanticCustomError(
                "duration",
                "timeout_minutes must be a number (got {value})",
                {"value": repr(minutes), "key": "timeout_minutes"},
            )
        if minutes <= 0:
            raise PydanticCustomError(
                "duration",
                "timeout_minutes must be positive (got {value})",
                {"value": minutes, "key": "timeout_minutes"},
            )
        try:
            data["timeout"] = timedelta(minutes=minutes)
        except OverflowError as exc:
            raise PydanticCustomError(
                "duration", "timeout_minutes is too large (got {value})", {"value": minutes, "key": "timeout_minutes"}
            ) from exc
    return data
