"""Structured logs: one JSON object per line (or plain text), level and format from settings.

Fields passed with `extra=` become keys of the JSON object. Callers pass ids, never keys or
content.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
# litellm's redaction filter marks every record it has seen; the mark is not a field of ours
FOREIGN_PREFIXES = ("_", "litellm_")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD and not key.startswith(FOREIGN_PREFIXES):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


class Collapsed:
    """Logs an event the first time it happens, then at most once per `interval_s` with the number
    of identical lines left out (`repeated`): an outage that fails every request writes a line
    every few seconds, not one per request. Identical means the same event and error text."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [last logged at, left out]

    def log(self, level: int, message: str, event: str, **fields: Any) -> None:
        key = (event, str(fields.get("error", "")))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._interval:
            seen[1] += 1
            return
        extra = {"event": event, **fields}
        if seen is not None and seen[1]:
            extra["repeated"] = int(seen[1])
        if len(self._seen) >= 64:  # bounded whatever the errors say
            self._seen.clear()
        self._seen[key] = [now, 0]
        self._logger.log(level, message, extra=extra)

    def flush(self) -> None:
        """Write out the counts still held back (when the condition they describe has ended)."""
        for (event, error), (_, left_out) in self._seen.items():
            if left_out:
                self._logger.info(
                    "repeated error",
                    extra={"event": event, "error": error or None, "repeated": int(left_out)},
                )
        self._seen.clear()
