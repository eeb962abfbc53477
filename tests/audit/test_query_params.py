"""Query parameters of the audit and admin APIs: a value of the wrong type or out of range, an
unknown parameter or one given twice is a 400 in the OpenAI error shape, naming the parameter."""

from __future__ import annotations

import httpx
import pytest

from gateway.dev.demo import demo_key
from tests.harness import Gateway, sovereign_gateway

AUDITOR = {"authorization": "Bearer sk-sgw-demoauditor-demo-key-not-a-secret"}
ADMIN = {"authorization": "Bearer sk-sgw-demoadmin-demo-key-not-a-secret"}
EXPLAIN = "/admin/policy/explain?tenant=acme-dev&model=mistral-small"

BAD = [
    # (path and query, headers, param, code)
    ("/audit/records?limit=-1", AUDITOR, "limit", "invalid_value"),
    ("/audit/records?limit=0", AUDITOR, "limit", "invalid_value"),
    ("/audit/records?limit=10001", AUDITOR, "limit", "invalid_value"),
    ("/audit/records?limit=ten", AUDITOR, "limit", "invalid_type"),
    ("/audit/records?limit=1.5", AUDITOR, "limit", "invalid_type"),
    ("/audit/records?limit=1&limit=2", AUDITOR, "limit", "invalid_value"),
    ("/audit/records?since=yesterday", AUDITOR, "since", "invalid_value"),
    ("/audit/records?until=2026-13-01", AUDITOR, "until", "invalid_value"),
    ("/audit/records?decision=maybe", AUDITOR, "decision", "invalid_value"),
    ("/audit/records?since=2026-11-02&until=2026-11-01", AUDITOR, "until", "invalid_value"),
    ("/audit/report?since=2026-11-01&until=2026-11-01", AUDITOR, "until", "invalid_value"),
    ("/audit/records?tenant=", AUDITOR, "tenant", "invalid_value"),
    ("/audit/records?tenant=" + "x" * 300, AUDITOR, "tenant", "invalid_value"),
    ("/audit/records?tenantt=eu-bank", AUDITOR, "tenantt", "unknown_parameter"),
    ("/audit/export?tenant=", AUDITOR, "tenant", "invalid_value"),
    ("/audit/export?limit=5", AUDITOR, "limit", "unknown_parameter"),
    ("/audit/report?since=last-week", AUDITOR, "since", "invalid_value"),
    ("/audit/checkpoints/latest?size=3", AUDITOR, "size", "unknown_parameter"),
    ("/audit/public-key?format=der", AUDITOR, "format", "unknown_parameter"),
    (EXPLAIN + "&at=2026-02-30", ADMIN, "at", "invalid_value"),
    (EXPLAIN + "&at=tomorrow", ADMIN, "at", "invalid_value"),
    (EXPLAIN + "&data_class=", ADMIN, "data_class", "invalid_value"),
    (EXPLAIN + "&model=other", ADMIN, "model", "invalid_value"),
    ("/admin/policy/explain?tenant=acme-dev", ADMIN, "model", "missing_parameter"),
    ("/admin/policy?verbose=1", ADMIN, "verbose", "unknown_parameter"),
    ("/admin/audit?reset=1", ADMIN, "reset", "unknown_parameter"),
]


@pytest.mark.parametrize(("url", "headers", "param", "code"), BAD, ids=[b[0][:60] for b in BAD])
def test_a_bad_query_parameter_is_a_400_naming_it(
    gateway: Gateway, url: str, headers: dict[str, str], param: str, code: str
) -> None:
    answer = httpx.get(gateway.base + url, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, code)
    assert f"`{param}`" in error["message"] and len(error["message"]) < 400


def test_a_bad_reload_parameter_is_refused_before_reloading(gateway: Gateway) -> None:
    answer = httpx.post(gateway.base + "/admin/policy/reload?force=1", headers=ADMIN, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "force"


def test_limit_gives_that_many_records_and_bad_parameters_wait_for_a_key(
    gateway: Gateway,
) -> None:
    for _ in range(3):
        httpx.post(
            gateway.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {demo_key('acme-dev')}"},
            json={"model": "mistral-small", "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
    params = {"tenant": "acme-dev", "since": "2020-01-01T00:00:00+02:00"}
    every = httpx.get(gateway.base + "/audit/records", headers=AUDITOR, params=params).json()
    assert len(every["data"]) >= 3
    one = httpx.get(
        gateway.base + "/audit/records", headers=AUDITOR, params={**params, "limit": "1"}
    ).json()
    assert one["data"] == every["data"][:1]
    # without a key the answer is 401, whatever the parameters: they are read after the key
    assert httpx.get(gateway.base + "/audit/records?limit=-1").status_code == 401


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("query", "--limit", "-1"), "must be 1 or more, not -1"),
        (("query", "--limit", "0"), "must be 1 or more, not 0"),
        (("query", "--since", "yesterday"), "not an RFC 3339 date or time: 'yesterday'"),
        (("prune", "--before", "2026-02-30"), "not an RFC 3339 date or time"),
        (("report", "--until", "soon"), "not an RFC 3339 date or time"),
    ],
)
def test_the_cli_refuses_the_same_bad_values(args: tuple[str, ...], says: str) -> None:
    done = sovereign_gateway("audit", *args, "--store", "sqlite:/nonexistent/never-opened")
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr
