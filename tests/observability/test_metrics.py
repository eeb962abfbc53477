"""Metrics, logs, dashboard and alert rules, checked against a real scrape and with promtool."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.dev.demo import demo_key
from gateway.observability.metrics import RequestCounter, RequestHistogram, TenantLabel
from tests.harness import ROOT, Gateway, PolicyDir, run_gateway, run_simulators

PROMTOOL = Path(os.environ.get("SGW_PROMTOOL", ROOT / ".tools" / "promtool"))
DEPLOY = ROOT / "deploy"


def promtool(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    assert PROMTOOL.is_file(), f"{PROMTOOL} is missing: run `make .tools/promtool`"
    return subprocess.run(
        [str(PROMTOOL), *map(str, args)], input=stdin, capture_output=True, timeout=60, check=False
    )


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(gw: Gateway, token: str | None = None) -> tuple[bytes, Samples]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    body = httpx.get(gw.base + "/metrics", headers=headers, timeout=10)
    assert body.status_code == 200, body.text
    samples: Samples = {}
    for family in text_string_to_metric_families(body.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return body.content, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Path]]:
    """A gateway with JSON logs at info level, a metrics token and a tenant cap of 3."""
    root = tmp_path_factory.mktemp("observed")
    policies = PolicyDir.from_examples(root / "policies")
    with (
        run_simulators(policies.path, root / "sim.log"),
        run_gateway(
            policies.path,
            root / "gw.log",
            log_level="info",
            log_format="json",
            metrics_token="scrape-token",
            metrics_max_tenants=3,
        ) as gw,
    ):
        yield gw, root / "gw.log"


TOKEN = "scrape-token"


def test_metrics_need_their_token(observed: tuple[Gateway, Path]) -> None:
    gw, _ = observed
    assert httpx.get(gw.base + "/metrics").status_code == 401
    assert (
        httpx.get(gw.base + "/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
    )


def test_known_traffic_moves_the_counters_by_exactly_that_much(
    observed: tuple[Gateway, Path],
) -> None:
    gw, _ = observed
    _, before = scrape(gw, TOKEN)
    bank = openai.OpenAI(base_url=gw.v1, api_key=demo_key("eu-bank"), max_retries=0)
    public = openai.OpenAI(base_url=gw.v1, api_key=demo_key("fr-public-body"), max_retries=0)
    tokens = {"input": 0.0, "output": 0.0}
    for _ in range(5):
        done = bank.chat.completions.create(
            model="mistral-small", messages=[{"role": "user", "content": "count me"}]
        )
        assert done.usage is not None
        tokens["input"] += done.usage.prompt_tokens
        tokens["output"] += done.usage.completion_tokens
    for _ in range(2):
        with pytest.raises(openai.PermissionDeniedError):
            public.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
    stream = bank.chat.completions.create(
        model="mistral-small",
        messages=[{"role": "user", "content": "s"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    tokens["input"] += chunks[-1].usage.prompt_tokens
    tokens["output"] += chunks[-1].usage.completion_tokens
    # the deployment the bank got (paris or frankfurt: both self-hosted, equal priority)
    _, after = scrape(gw, TOKEN)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    served = sum(
        delta(
            "sgw_requests_total",
            tenant="eu-bank",
            model="mistral-small",
            deployment=d,
            country=c,
            jurisdiction=c,
            status="200",
        )
        for d, c in (("mistral-small@vllm-paris", "FR"), ("mistral-small@vllm-frankfurt", "DE"))
    )
    assert served == 6
    assert (
        delta(
            "sgw_requests_total",
            tenant="fr-public-body",
            model="gpt-4o",
            deployment="",
            country="",
            jurisdiction="",
            status="403",
        )
        == 2
    )
    assert delta("sgw_policy_decisions_total", tenant="eu-bank", result="allowed", rule="") == 6
    refused = sum(
        delta("sgw_policy_decisions_total", tenant="fr-public-body", result="refused", rule=r)
        for r in ("inference_country", "model_allowlist", "operator_control")
    )
    assert refused == 2
    assert delta("sgw_request_errors_total", tenant="fr-public-body", code="policy_violation") == 2
    genai = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "vllm",
        "gen_ai_request_model": "mistral-small",
    }
    for kind in ("input", "output"):
        assert delta("gen_ai_client_token_usage_count", **genai, gen_ai_token_type=kind) == 6
        assert (
            delta("gen_ai_client_token_usage_sum", **genai, gen_ai_token_type=kind) == tokens[kind]
        )
    assert delta("gen_ai_server_time_to_first_token_seconds_count", **genai) == 6
    assert delta("gen_ai_server_time_per_output_token_seconds_count", **genai) == 1
    assert (
        delta("sgw_request_duration_seconds_count", tenant="eu-bank", api="chat", stream="false")
        == 5
    )
    assert delta("sgw_audit_records_total") == 9  # the stream has two: admitted, completed
    assert value(after, "sgw_audit_writer_up") == 1
    assert value(after, "sgw_policy_info", revision=_revision(gw)) == 1


def _revision(gw: Gateway) -> str:
    found: str = httpx.get(gw.base + "/ready").json()["policy_revision"]
    return found


def test_promtool_accepts_a_real_scrape(observed: tuple[Gateway, Path]) -> None:
    gw, _ = observed
    body, _ = scrape(gw, TOKEN)
    checked = promtool("check", "metrics", stdin=body)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_tenant_labels_are_capped(observed: tuple[Gateway, Path]) -> None:
    gw, _ = observed
    for tenant in ("eu-bank", "fr-public-body", "research-lab", "acme-dev"):
        httpx.post(
            gw.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {demo_key(tenant)}"},
            json={"model": "eurollm-9b", "messages": [{"role": "user", "content": "x"}]},
            timeout=30,
        )
    _, samples = scrape(gw, TOKEN)
    tenants = {
        dict(labels).get("tenant") for (name, labels) in samples if name == "sgw_requests_total"
    }
    assert "other" in tenants and len(tenants - {"other"}) == 3
    label = TenantLabel(enabled=False, cap=10)
    assert label("eu-bank") == ""


def test_model_names_a_client_makes_up_never_become_label_values(
    observed: tuple[Gateway, Path],
) -> None:
    gw, _ = observed
    bank = openai.OpenAI(base_url=gw.v1, api_key=demo_key("eu-bank"), max_retries=0)
    made_up = [f"no-such-model-{i}" for i in range(5)]
    for model in made_up:
        with pytest.raises(openai.APIStatusError):
            bank.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    body, samples = scrape(gw, TOKEN)
    assert b"no-such-model" not in body
    refused = value(
        samples,
        "sgw_requests_total",
        tenant="eu-bank",
        model="",
        deployment="",
        country="",
        jurisdiction="",
        status="404",
    )
    assert refused >= 5  # still counted, under no model


def test_logs_are_json_with_ids_and_never_keys_or_prompts(observed: tuple[Gateway, Path]) -> None:
    gw, log = observed
    secret_prompt = "the merger closes on friday"
    answer = httpx.post(
        gw.v1 + "/chat/completions",
        headers={"authorization": f"Bearer {demo_key('eu-bank')}"},
        json={"model": "mistral-small", "messages": [{"role": "user", "content": secret_prompt}]},
        timeout=30,
    )
    assert answer.status_code == 200
    lines = [line for line in log.read_bytes().splitlines() if line.startswith(b"{")]
    documents = [orjson.loads(line) for line in lines]
    access = [d for d in documents if d.get("event") == "request"]
    mine = [d for d in access if d["request_id"] == answer.headers["x-request-id"]]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["decision_id"] == answer.headers["x-sovereign-decision-id"]
    assert entry["deployment"] == answer.headers["x-sovereign-deployment"]
    assert (
        entry["tenant"] == "eu-bank" and entry["key_id"] == "demoeubank" and entry["status"] == 200
    )
    text = log.read_text()
    assert secret_prompt not in text
    for tenant in ("eu-bank", "fr-public-body", "research-lab", "acme-dev"):
        assert demo_key(tenant) not in text


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", DEPLOY / "prometheus" / "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts.test.yaml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_dashboard_queries_parse_and_name_real_metrics(
    observed: tuple[Gateway, Path], tmp_path: Path
) -> None:
    gw, _ = observed
    dashboard = json.loads((DEPLOY / "grafana" / "sovereign-gateway.json").read_text())
    assert dashboard["uid"] == "sovereign-gateway"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
    # every query is valid PromQL: promtool parses it as a recording rule
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:panel_{i}",
                        "expr": e.replace("$__rate_interval", "5m").replace("$tenant", ".*"),
                    }
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.json"
    path.write_text(json.dumps(rules))
    checked = promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # and every metric they name is one the gateway exports
    body, samples = scrape(gw, TOKEN)
    exported = {name for name, _ in samples}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):  # families without samples yet (no child labels)
            _, _, name, kind = line.split(" ")
            exported |= {name} | (
                {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set()
            )
    label_names = {k for _, labels in samples for k, _ in labels}
    named = {m for e in exprs for m in re.findall(r"\b(?:sgw|gen_ai)_[a-z_]+", e)} - label_names
    assert named <= exported, named - exported


def test_request_path_metrics_read_exactly_as_prometheus_clients_own() -> None:
    """The request path keeps its counters and histograms as plain numbers; a scrape must read
    the same as prometheus_client's Counter and Histogram fed the same values, bounds included."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = RequestCounter("sgw_x", "doc", ["tenant", "status"], ours)
    histogram = RequestHistogram("sgw_y_seconds", "doc", ["tenant"], (0.005, 1, 2.5, 64), ours)
    their_counter = Counter("sgw_x", "doc", ["tenant", "status"], registry=theirs)
    their_histogram = Histogram(
        "sgw_y_seconds", "doc", ["tenant"], buckets=(0.005, 1, 2.5, 64), registry=theirs
    )
    for tenant, value in [("a", 0.001), ("a", 0.005), ("b", 1), ("a", 64), ("a", 7e9), ("b", 3)]:
        histogram.observe((tenant,), value)
        their_histogram.labels(tenant).observe(value)
        counter.inc((tenant, "200"), 2)
        their_counter.labels(tenant, "200").inc(2)

    def read(registry: CollectorRegistry) -> str:  # creation times differ by construction
        return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", generate_latest(registry).decode())

    assert read(ours) == read(theirs)
    assert 'sgw_y_seconds_bucket{le="0.005",tenant="a"} 2.0' in read(ours)  # a bound counts in
    # unlabelled ones read 0 before their first observation, as prometheus_client's do
    RequestCounter("sgw_z", "doc", [], ours)
    RequestHistogram("sgw_w", "doc", [], (1, 2), ours)
    Counter("sgw_z", "doc", registry=theirs)
    Histogram("sgw_w", "doc", buckets=(1, 2), registry=theirs)
    assert read(ours) == read(theirs)
    assert "sgw_z_total 0.0" in read(ours)
