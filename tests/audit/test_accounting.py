"""What is recorded and counted when the upstream's answer cannot be accounted for, and when the
policy changes under a request: the client, the audit record and the metrics say the same."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.dev.demo import demo_key
from tests.harness import Gateway, PolicyDir, error_body, run_gateway, run_simulators

BAD_USAGE = {"prompt_tokens": "many", "completion_tokens": 3, "total_tokens": 3}


class _BadUsage(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream whose answers are fine but for a non-numeric usage."""

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        meta = {"id": "cmpl-1", "created": 1, "model": request["model"]}
        if request.get("stream"):
            events = [
                {
                    **meta,
                    "object": "chat.completion.chunk",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": "hi"},
                            "finish_reason": None,
                        }
                    ],
                },
                {
                    **meta,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                },
                {**meta, "object": "chat.completion.chunk", "choices": [], "usage": BAD_USAGE},
            ]
            body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
            body += b"data: [DONE]\n\n"
            kind = "text/event-stream"
        else:
            answer = {
                **meta,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": BAD_USAGE,
            }
            body, kind = json.dumps(answer).encode(), "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def bad_usage_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("usage")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadUsage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    policies = PolicyDir.from_examples(root / "policies")
    try:
        with run_simulators(policies.path, root / "sim.log"):

            def to_bad(catalog: dict[str, Any]) -> None:
                for name in ("vllm-paris", "vllm-frankfurt"):
                    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
                    catalog["backends"][name]["base_url"] = url

            policies.edit_catalog(to_bad)
            with run_gateway(policies.path, root / "gw.log", health_probe_interval_s=0) as gw:
                yield gw
    finally:
        server.shutdown()
        server.server_close()


def _client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=demo_key("acme-dev"), max_retries=0, timeout=20)


def test_a_non_numeric_usage_is_answered_502_with_the_reason(bad_usage_gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        _client(bad_usage_gateway).chat.completions.create(
            model="mistral-small", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    error = error_body(info.value)
    assert error["code"] == "invalid_upstream_usage" and "'many'" in error["message"]


def test_a_stream_with_a_non_numeric_usage_ends_with_an_error_event(
    bad_usage_gateway: Gateway,
) -> None:
    stream = _client(bad_usage_gateway).chat.completions.create(
        model="mistral-small", messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "'many'" in str(info.value.message)


def test_the_record_and_the_metrics_agree_on_a_refusal_by_a_changed_policy(
    tmp_path: Path,
) -> None:
    import datetime as dt

    from prometheus_client import generate_latest

    from gateway.audit.record import RecordBuilder
    from gateway.auth.keys import Principal
    from gateway.errors import PolicyViolation
    from gateway.exchange import Exchange
    from gateway.observability.metrics import Metrics
    from gateway.observability.observe import RequestObserver
    from gateway.policy.apis import Api
    from gateway.policy.decision import Decision
    from gateway.policy.holder import PolicyHolder
    from gateway.policy.schema import AuditContent

    policies = PolicyDir.from_examples(tmp_path / "policies")

    compiled = PolicyHolder(policies.path, dt.date.today).current
    exchange = Exchange("req-1", "dec-1", Principal("acme-dev", "k1"), Api.CHAT)
    exchange.model = "mistral-small"
    exchange.policy = compiled
    allowed = Decision(compiled.route("acme-dev", "mistral-small", None))
    assert allowed.allowed
    exchange.decision = allowed.after_reload("a-later-revision")
    exchange.fail(exchange.decision.error(exchange.decision_id))
    assert isinstance(exchange.error, PolicyViolation) and exchange.status == 403
    record = RecordBuilder().build(exchange, 0.0, None, AuditContent.NONE)
    metrics = Metrics()
    RequestObserver(metrics, access_log=False).observe(exchange)
    text = generate_latest(metrics.registry).decode()
    assert record["decision"] == "refused"
    assert 'result="refused"' in text and 'rule="policy_changed"' in text, text[:2000]
