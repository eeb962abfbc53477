"""Bounded load for the audit-store reliability scenarios, and what the log says afterwards.

`Load` runs JSON and streaming clients (the official wire format, over httpx) in a thread of its
own until stopped, and keeps what each client saw: the request id, the status, the error code,
whether any token arrived, and when. `merged_records` reads the audit store directly and gives one
entry per request (a stream's records merged, as `audit query` shows them).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from gateway.audit.query import requests_of
from gateway.audit.setup import open_store
from gateway.audit.store import Query
from gateway.dev.demo import demo_key


@dataclass
class Seen:
    request_id: str
    stream: bool
    status: int  # 0: no answer (the connection failed)
    error: str = ""
    token: bool = False  # a stream delivered some content
    done: bool = False  # a stream reached data: [DONE]
    left: bool = False  # the client left on purpose
    sent: float = 0.0
    answered: float = 0.0


@dataclass
class Load:
    base: str
    json_clients: int = 8
    stream_clients: int = 8
    tenant: str = "acme-dev"
    key: str = ""  # the tenant's demo key by default
    model: str = "mistral-small"
    leave_fraction: float = 0.0  # streaming clients that leave after their first event
    timeout_s: float = 30.0
    seen: list[Seen] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 10)
            self._thread = None

    def since(self, moment: float) -> list[Seen]:
        return [s for s in list(self.seen) if s.sent >= moment]

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.json_clients + self.stream_clients)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            workers = [self._worker(client, False, i) for i in range(self.json_clients)]
            workers += [self._worker(client, True, i) for i in range(self.stream_clients)]
            await asyncio.gather(*workers)

    async def _worker(self, client: httpx.AsyncClient, stream: bool, n: int) -> None:
        rng = random.Random(n * 2 + stream)
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": "reliability"}],
            "stream": stream,
        }
        headers = {"authorization": f"Bearer {self.key or demo_key(self.tenant)}"}
        url = self.base + "/v1/chat/completions"
        while not self._stop.is_set():
            seen = Seen("", stream, 0, sent=time.monotonic())
            leave = stream and rng.random() < self.leave_fraction
            try:
                async with client.stream("POST", url, json=body, headers=headers) as response:
                    seen.request_id = response.headers.get("x-request-id", "")
                    seen.status = response.status_code
                    if response.status_code != 200:
                        seen.error = _code(await response.aread())
                    elif not stream:
                        await response.aread()
                    else:
                        await _read_stream(response, seen, leave)
            except httpx.HTTPError as exc:
                seen.error = seen.error or type(exc).__name__
                if isinstance(exc, httpx.ConnectError):
                    await asyncio.sleep(0.05)  # the gateway is down: do not spin
            seen.answered = time.monotonic()
            self.seen.append(seen)


async def _read_stream(response: httpx.Response, seen: Seen, leave: bool) -> None:
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            seen.done = True
            return
        event = orjson.loads(line[6:])
        if "error" in event:
            seen.error = str(event["error"].get("code") or "error")
            return
        if any(c.get("delta", {}).get("content") for c in event.get("choices") or ()):
            seen.token = True
            if leave:
                seen.left = True
                return


def _code(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"]["code"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "unreadable"


async def _read(url: str) -> list[dict[str, Any]]:
    store = open_store(url)
    await store.open()
    try:
        return [orjson.loads(r.body) for r in await store.read(Query())]
    finally:
        await store.aclose()


def all_records(url: str) -> list[dict[str, Any]]:
    return asyncio.run(_read(url))


async def _read_by_log(url: str) -> dict[str, list[dict[str, Any]]]:
    store = open_store(url)
    await store.open()
    try:
        logs: dict[str, list[dict[str, Any]]] = {}
        for r in await store.read(Query()):
            logs.setdefault(r.log_id, []).append(orjson.loads(r.body))
        return logs
    finally:
        await store.aclose()


def records_by_log(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every log in the store, each with its records in log order."""
    return asyncio.run(_read_by_log(url))


def merged_records(url: str) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in requests_of(all_records(url))}


@dataclass
class Figures:
    """What a scenario prints: one row of the table in docs/reliability.md."""

    scenario: str
    answered: int = 0  # clients that got their answer (200, a whole stream or a refusal)
    recorded: int = 0  # of those, found in the log with the status they got
    lost: int = 0  # answered but not in the log
    disagree: int = 0  # in the log with another outcome than the client saw
    refused_503: int = 0
    forwarded_down: int = 0  # requests the backends received while the store was down
    recover_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def show(self) -> str:
        recover = "-" if self.recover_s is None else f"{self.recover_s:.1f} s"
        line = (
            f"| {self.scenario} | {self.answered} | {self.recorded} | {self.lost} |"
            f" {self.disagree} | {self.refused_503} | {self.forwarded_down} | {recover} |"
        )
        print("\nRELIABILITY " + line + (" " + "; ".join(self.notes) if self.notes else ""))
        return line


def check(seen: list[Seen], merged: dict[str, dict[str, Any]], figures: Figures) -> Figures:
    """Compare what each client saw with the log: every answer recorded, and with its outcome."""
    for s in seen:
        if not s.request_id or s.status == 0:
            continue  # never answered (the gateway was killed, or the client left first)
        record = merged.get(s.request_id)
        if s.status == 503 and s.error == "audit_unavailable":
            figures.refused_503 += 1
            if record is not None and record.get("status") == 200:
                figures.disagree += 1  # the log says served, the client got 503
            continue
        delivered = (s.status != 200) or (not s.stream) or s.done
        if not delivered:
            if s.stream and s.token and (record is None or not record.get("deployment")):
                figures.lost += 1  # a token reached a client with no admission record
            continue
        figures.answered += 1
        if record is None:
            figures.lost += 1
        elif s.stream and s.status == 200 and s.error:
            figures.recorded += 1  # ended with an error event: the admission stands
        elif record.get("status") == s.status:
            figures.recorded += 1
        else:
            figures.disagree += 1
    return figures
