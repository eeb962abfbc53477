"""Query parameters of the admin and audit APIs, checked before they are used.

Each endpoint names the parameters it takes and how each is read. An unknown parameter (a typo
such as `tenantt=` would otherwise widen a query to every tenant), one given twice, or a value of
the wrong type or out of range is a 400 in the OpenAI error shape, naming the parameter.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from starlette.datastructures import QueryParams

from gateway.audit.query import stored_time
from gateway.errors import InvalidRequest

Reader = Callable[[str], Any]  # raises ValueError with what a good value looks like
TEXT_MAX = 256


class InvalidType(ValueError):
    """The value is not of the parameter's type (as opposed to out of range)."""


def integer(low: int, high: int) -> Reader:
    def read(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise InvalidType(f"must be an integer from {low} to {high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be from {low} to {high}")
        return number

    return read


def text(value: str) -> str:
    if not value or len(value) > TEXT_MAX:
        raise ValueError(f"must be 1 to {TEXT_MAX} characters")
    return value


def choice(*allowed: str) -> Reader:
    def read(value: str) -> str:
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return read


def date(value: str) -> dt.date:
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError("must be a date (YYYY-MM-DD)")


def moment(value: str) -> str:
    """A date or an RFC 3339 time, as the audit store keeps times (UTC, microseconds, `Z`)."""
    try:
        return stored_time(value)
    except ValueError:
        raise ValueError(
            "must be an RFC 3339 date or time (2026-11-01, 2026-11-01T09:00:00Z)"
        ) from None


def read_params(query: QueryParams, readers: Mapping[str, Reader]) -> dict[str, Any]:
    """The parameters of `query` read by `readers`; absent ones are left out."""
    counts = Counter(name for name, _ in query.multi_items())
    for name, count in counts.items():
        if name not in readers:
            takes = ", ".join(f"`{n}`" for n in readers) or "none"
            raise InvalidRequest(
                f"Unknown query parameter `{name[:TEXT_MAX]}`; this endpoint takes {takes}",
                param=name[:TEXT_MAX],
                code="unknown_parameter",
            )
        if count > 1:
            raise InvalidRequest(
                f"Query parameter `{name}` is given {count} times", param=name, code="invalid_value"
            )
    found: dict[str, Any] = {}
    for name, read in readers.items():
        if name in query:
            try:
                found[name] = read(query[name])
            except ValueError as exc:
                code = "invalid_type" if isinstance(exc, InvalidType) else "invalid_value"
                raise InvalidRequest(f"`{name}` {exc}", param=name, code=code) from None
    return found
