"""The Helm chart, linted and rendered offline with several value sets: every manifest valid for a
current Kubernetes, the policies it mounts valid, bad values refused, and the pods' egress exactly
the catalog's backends (plus DNS, PostgreSQL, Redis)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from gateway.cli.deploy import read_catalog, vllm_launches
from tests.deploy.chart import (
    CHART,
    FULL,
    OWN,
    OWN_CATALOG,
    RELEASE,
    VALUE_SETS,
    chart_file,
    load_chart,
    notes,
    one,
    policy_files,
    render,
)
from tests.harness import ROOT, sovereign_gateway

CRDS = {
    "ServiceMonitor",
    "PrometheusRule",
}  # the Prometheus Operator's: no schema in kubernetes-validate


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_the_chart_lints_without_a_warning(name: str) -> None:
    report = helm_python.lint(
        CHART, VALUE_SETS[name], strict=True, kube_version=f"v{latest_version()}.0"
    )
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_valid_for_a_current_kubernetes(name: str) -> None:
    manifests = render(VALUE_SETS[name])
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "Secret"} <= kinds
    for manifest in manifests:
        if manifest["kind"] in CRDS:
            assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(manifest, latest_version(), strict=True)


def test_the_full_value_set_renders_every_optional_part() -> None:
    kinds = sorted(m["kind"] for m in render(FULL))
    for kind in (
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ):
        assert kind in kinds
    assert kinds.count("Deployment") == 3  # the gateway and two vLLM servers


def test_the_gateway_pod_is_hardened() -> None:
    for values in VALUE_SETS.values():
        spec = one(render(values), "Deployment", f"{RELEASE}-sovereign-gateway")["spec"][
            "template"
        ]["spec"]
        container = spec["containers"][0]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert spec["terminationGracePeriodSeconds"] > 120  # longer than a stream's drain
        assert container["resources"]["requests"]
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/tmp", "/var/lib/sovereign-gateway"}


@pytest.mark.parametrize("name", ["defaults", "full", "own-catalog"])
def test_the_policies_in_the_configmap_pass_policy_check(name: str, tmp_path: Path) -> None:
    directory = policy_files(render(VALUE_SETS[name]), tmp_path / "policies")
    if name == "full":  # keys.content of this value set has no key; the policy must still load
        assert yaml.safe_load((directory / "keys.yaml").read_text()) == {"keys": []}
    done = sovereign_gateway("policy", "check", directory)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (directory / "tenants" / "eu-bank.yaml").read_text() == (
        ROOT / "policies" / "tenants" / "eu-bank.yaml"
    ).read_text()


def test_a_policy_change_rolls_the_pods_in_checksum_mode_only() -> None:
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        deployment = one(render(values), "Deployment", f"{RELEASE}-sovereign-gateway")
        result: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
        return result

    before = annotations({})["checksum/policies"]
    after = annotations({"policies": {"files": {"tenants/new.yaml": "tenant: new\nmodels: []\n"}}})
    assert after["checksum/policies"] != before
    assert "checksum/policies" not in annotations({"policies": {"reload": "live"}})


BAD_VALUES = [
    ({"replicaCount": 0}, "/replicaCount"),
    ({"policies": {"reload": "sometimes"}}, "/policies/reload"),
    (
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "/securityContext/readOnlyRootFilesystem",
    ),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    (
        {"networkPolicy": {"backendAddresses": {"mistral-ai": ["51.159.1.1"]}}},
        "/networkPolicy/backendAddresses/mistral-ai/0",
    ),
    ({"audit": {"store": "mysql://db/audit"}}, "/audit/store"),
    ({"credentials": {"values": {"lower-case": "x"}}}, "lower-case"),
    ({"vllm": {"backends": {"vllm-paris": {"gpus": 1}}}}, "/vllm/backends/vllm-paris"),
    ({"replicas": 3}, "replicas"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES)
def test_bad_values_are_refused_by_the_schema(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as refused:
        load_chart().render(values, name=RELEASE)
    assert where in str(refused.value)


def _expected_egress(catalog: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """What the pods may reach, computed here from the catalog, independently of the template."""
    network = values["networkPolicy"]
    in_cluster = (
        values.get("vllm", {}).get("backends", {}) if values.get("vllm", {}).get("enabled") else {}
    )
    rules: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
    ]
    for name, backend in sorted(catalog["backends"].items()):
        url = urlsplit(backend["base_url"])
        ports = [url.port or (443 if url.scheme == "https" else 80)]
        if backend.get("metrics_url"):
            metrics = urlsplit(backend["metrics_url"])
            if metrics.hostname == url.hostname and metrics.port not in ports:
                ports.append(metrics.port)
        peers: list[dict[str, Any]]
        if name in in_cluster:
            peers = [
                {
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/instance": RELEASE,
                            "sovereign-gateway/backend": name,
                        }
                    }
                }
            ]
        elif _is_address(url.hostname or ""):
            peers = [{"ipBlock": {"cidr": f"{url.hostname}/32"}}]
        else:
            peers = [{"ipBlock": {"cidr": cidr}} for cidr in network["backendAddresses"][name]]
        rules.append({"to": peers, "ports": [{"protocol": "TCP", "port": p} for p in ports]})
    for service, port in (("postgresql", 5432), ("redis", 6379)):
        cidrs = network.get(service, {}).get("cidrs", [])
        if cidrs:
            rules.append(
                {
                    "to": [{"ipBlock": {"cidr": c}} for c in cidrs],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            )
    return rules


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("values", "catalog_text"),
    [
        (FULL, (ROOT / "deploy" / "catalog.yaml").read_text()),
        (OWN, OWN_CATALOG),
    ],
)
def test_network_policy_egress_is_exactly_the_catalogs_backends(
    values: dict[str, Any], catalog_text: str
) -> None:
    policy = one(render(values), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == _expected_egress(yaml.safe_load(catalog_text), values)


def test_a_backend_reached_by_name_without_addresses_stops_the_install() -> None:
    values = {
        "networkPolicy": {"enabled": True, "backendAddresses": {"mistral-ai": ["51.159.0.0/16"]}}
    }
    with pytest.raises(helm_python.HelmError) as refused:
        render(values)
    assert "backend scaleway-paris is reached by name (api.scaleway.ai)" in str(refused.value)
    assert "networkPolicy.backendAddresses.scaleway-paris" in str(refused.value)


def test_the_vllm_servers_serve_what_the_catalog_asks_for() -> None:
    manifests = render(FULL)
    launches = {
        launch.backend: launch
        for launch in vllm_launches(read_catalog(ROOT / "deploy" / "catalog.yaml"))
    }
    for name, spec in FULL["vllm"]["backends"].items():
        launch = launches[name]
        deployment = one(manifests, "Deployment", launch.host)  # the host name of its base_url
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["command"] == ["vllm"]
        assert container["args"] == launch.args() + spec.get("extraArgs", [])
        assert pod["nodeSelector"] == {"topology.kubernetes.io/region": spec["region"]}
        assert container["resources"]["limits"]["nvidia.com/gpu"] == spec.get("gpus", 1)
        key = next(e for e in container["env"] if e["name"] == "VLLM_API_KEY")
        assert key["valueFrom"]["secretKeyRef"]["key"] == launch.api_key_env
        service = one(manifests, "Service", launch.host)
        assert service["spec"]["ports"][0]["port"] == launch.port


def test_a_vllm_server_for_a_backend_the_catalog_lacks_is_refused() -> None:
    with pytest.raises(helm_python.HelmError) as refused:
        render({"vllm": {"enabled": True, "backends": {"vllm-oslo": {"region": "eu-north-1"}}}})
    assert "the catalog has no backend vllm-oslo of kind vllm" in str(refused.value)


def test_the_prometheus_rule_and_dashboard_are_the_shipped_files() -> None:
    manifests = render(FULL)
    rule = one(manifests, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(
        (ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text()
    )
    dashboard = one(manifests, "ConfigMap", f"{RELEASE}-sovereign-gateway-dashboard")
    assert (
        dashboard["data"]["sovereign-gateway.json"]
        == (ROOT / "deploy" / "grafana" / "sovereign-gateway.json").read_text()
    )


def test_the_chart_reads_the_repositorys_files_not_copies() -> None:
    for name, source in (
        ("catalog.yaml", "deploy/catalog.yaml"),
        ("groups.yaml", "policies/groups.yaml"),
        ("tenants", "policies/tenants"),
        ("keys.yaml", "policies/keys.yaml"),
        ("alerts.yaml", "deploy/prometheus/alerts.yaml"),
        ("dashboard.json", "deploy/grafana/sovereign-gateway.json"),
    ):
        assert chart_file(name).is_symlink()
        assert chart_file(name).resolve() == (ROOT / source).resolve()


def test_the_notes_warn_about_demo_keys_and_a_missing_audit_database() -> None:
    text = notes({})
    assert "PUBLIC demo keys" in text
    assert "no audit.store" in text
    assert "PUBLIC demo keys" not in notes(FULL)
    assert "no audit.store" not in notes(FULL)
