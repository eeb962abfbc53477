"""Relay an OpenAI-style SSE stream event by event, reading usage and dropping the usage chunk
that the gateway asked for on the client's behalf. Memory is bounded by one event, whatever the
length of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from gateway.errors import UpstreamStatusError


class InvalidUsage(UpstreamStatusError):
    """The upstream answered, but its usage is not a count of tokens: the request cannot be
    accounted for, so it is answered 502 with the reason. Not retried elsewhere: the work was
    done, and doing it again would be paid twice."""

    code = "invalid_upstream_usage"

    def __init__(self, message: str) -> None:
        envelope = {
            "error": {
                "message": message,
                "type": UpstreamStatusError.type,
                "param": None,
                "code": self.code,
            }
        }
        super().__init__(502, envelope)

    @property
    def retryable(self) -> bool:
        return False


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_json(cls, usage: object) -> Usage | None:
        """Usage from the upstream's `usage` object; raises `InvalidUsage` for a count that is
        not a whole number of tokens."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        completion = usage.get("completion_tokens") or usage.get("output_tokens") or 0
        return cls(_count(prompt, "prompt"), _count(completion, "completion"))


def _count(value: object, what: str) -> int:
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    raise InvalidUsage(
        f"The upstream answered, but its usage gives {shown} as the number of {what} tokens;"
        " the request cannot be accounted for"
    )


class SSEUsageFilter:
    """Feed raw bytes, get back whole events to forward."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        self._strip = strip_usage_chunk
        self._buffer = b""
        self._separator: bytes | None = None
        self.usage: Usage | None = None

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._buffer + chunk if self._buffer else chunk
        separator = self._separator
        if separator is None:  # the first line end says which one the stream uses
            newline = buffer.find(b"\n")
            if newline < 0:
                self._buffer = buffer
                return b""
            crlf = newline > 0 and buffer[newline - 1] == 0x0D
            separator = self._separator = b"\r\n\r\n" if crlf else b"\n\n"
        end = buffer.rfind(separator)
        if end < 0:
            self._buffer = buffer
            return b""
        cut = end + len(separator)
        ready, self._buffer = buffer[:cut], buffer[cut:]
        found = _usage_at(ready, 0)
        if found < 0:  # the usual case: whole events, none with usage, passed on as they are
            return ready
        # isolate each event carrying usage; everything around it goes through untouched
        kept: list[bytes] = []
        start = 0
        while found >= 0:
            begin = ready.rfind(separator, start, found)
            begin = start if begin < 0 else begin + len(separator)
            close = ready.find(separator, found) + len(separator)
            if self._keep(ready[begin:close]):
                kept.append(ready[start:close])
            else:
                kept.append(ready[start:begin])
            start = close
            found = _usage_at(ready, start)
        kept.append(ready[start:])
        return b"".join(kept)

    def flush(self) -> bytes:
        """What is left when the stream ends (an event without its blank line)."""
        rest, self._buffer = self._buffer, b""
        if rest and _usage_at(rest, 0) >= 0 and not self._keep(rest):
            return b""
        return rest

    def _keep(self, event: bytes) -> bool:
        if b'"usage"' not in event:
            return True
        data = b"".join(
            line[5:].strip() for line in event.splitlines() if line.startswith(b"data:")
        )
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(obj, dict):
            return True
        usage = Usage.from_json(obj.get("usage"))
        if usage is not None:
            self.usage = usage
            if self._strip and not obj.get("choices"):
                return False
        return True


def _usage_at(data: bytes, start: int) -> int:
    """Where the next `"usage": {...}` is, with or without the space, or -1."""
    tight = data.find(b'"usage":{', start)
    spaced = data.find(b'"usage": {', start)
    if tight < 0:
        return spaced
    return tight if spaced < 0 else min(tight, spaced)


def error_event(envelope: dict[str, object]) -> bytes:
    """An OpenAI-style error event; the SDKs raise `APIError` when they read one."""
    return b"data: " + orjson.dumps(envelope) + b"\n\n"
