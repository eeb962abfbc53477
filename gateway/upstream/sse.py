"""Relay an OpenAI-style SSE stream event by event, reading usage and dropping the usage chunk
that the gateway asked for on the client's behalf. Memory is bounded by one event, whatever the
length of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_json(cls, usage: object) -> Usage | None:
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
        completion = usage.get("completion_tokens") or usage.get("output_tokens") or 0
        return cls(int(prompt), int(completion))


class SSEUsageFilter:
    """Feed raw bytes, get back whole events to forward."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        self._strip = strip_usage_chunk
        self._buffer = b""
        self._separator = b"\n\n"
        self.usage: Usage | None = None
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        if not self._buffer and self.events == 0 and b"\r\n" in chunk:
            self._separator = b"\r\n\r\n"
        self._buffer += chunk
        end = self._buffer.rfind(self._separator)
        if end < 0:
            return b""
        cut = end + len(self._separator)
        ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
        if b'"usage":{' not in ready and b'"usage": {' not in ready:
            self.events += ready.count(self._separator)
            return ready
        kept = [ev for ev in ready.split(self._separator)[:-1] if self._keep(ev)]
        self.events += len(kept)
        return b"".join(ev + self._separator for ev in kept)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
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


def error_event(envelope: dict[str, object]) -> bytes:
    """An OpenAI-style error event; the SDKs raise `APIError` when they read one."""
    return b"data: " + orjson.dumps(envelope) + b"\n\n"
