"""Canonical JSON for audit records: sorted keys, no whitespace, UTF-8, integers and strings only.

This is RFC 8785 (JCS) for documents without floats (keys here are ASCII, so byte order and JCS's
UTF-16 order agree). Floats are refused, so the hash of a record is defined by its content alone.
"""

from __future__ import annotations

from typing import Any

import orjson


class NotCanonical(ValueError):
    pass


def canonical(document: Any, *, check: bool = True) -> bytes:
    """`check=False` is for documents built of integers and strings by construction (the writer's
    records); `verify` always checks, so a float that slipped in would fail verification."""
    if check:
        _check(document)
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def _check(value: Any) -> None:
    if isinstance(value, float):
        raise NotCanonical(f"floats are not allowed in audit records: {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"keys must be strings: {key!r}")
            _check(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check(item)
