"""Rendering the Helm chart offline (helm-python-sdk, no helm binary, no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import yaml

from tests.harness import ROOT

CHART = ROOT / "helm" / "sovereign-gateway"
RELEASE = "sgw"
NAMESPACE = "ai"

# a production-like value set: every optional part on
FULL: dict[str, Any] = {
    "replicaCount": 3,
    "image": {"repository": "registry.example.org/sovereign-gateway", "tag": "0.1.0"},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "llm.example.org",
        "tlsSecretName": "llm-tls",
    },
    "tls": {"enabled": True, "secretName": "gateway-tls"},
    "policies": {"reload": "live"},
    "keys": {"content": "keys: []\n"},
    "audit": {
        "store": "postgresql://gateway:secret@db.internal:5432/audit",
        "signingKey": {
            "content": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
        },
    },
    "redis": {"url": "redis://redis.internal:6379/0"},
    "credentials": {
        "values": {
            "VLLM_PARIS_API_KEY": "k1",
            "VLLM_FRANKFURT_API_KEY": "k2",
            "MISTRAL_API_KEY": "k3",
        }
    },
    "settings": {"log_level": "warning", "max_attempts": 2},
    "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
    "serviceMonitor": {"enabled": True, "metricsTokenSecret": {"name": "metrics", "key": "token"}},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "backendAddresses": {
            "mistral-ai": ["51.159.0.0/16"],
            "scaleway-paris": ["62.210.0.0/16", "2001:bc8::/32"],
        },
        "postgresql": {"cidrs": ["10.20.0.5/32"]},
        "redis": {"cidrs": ["10.20.0.6/32"]},
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}
        ],
    },
    "vllm": {
        "enabled": True,
        "backends": {
            "vllm-paris": {
                "region": "eu-west-3",
                "gpus": 2,
                "extraArgs": ["--max-model-len", "32768"],
            },
            "vllm-frankfurt": {"region": "eu-central-1"},
        },
    },
}

# everything from secrets and a ConfigMap the operator manages
EXISTING: dict[str, Any] = {
    "keys": {"existingSecret": "gateway-keys"},
    "audit": {
        "storeSecret": {"name": "gateway-db", "key": "dsn"},
        "signingKey": {"existingSecret": "gateway-signing"},
    },
    "redis": {"urlSecret": {"name": "gateway-redis", "key": "url"}},
    "credentials": {"existingSecret": "provider-keys"},
    "policies": {"existingConfigMap": "my-policies"},
}

# the operator's own catalog, given as a file: backends by IP address only
OWN_CATALOG = """
backends:
  onprem-lyon:
    kind: vllm
    base_url: http://10.1.2.3:8001/v1
    metrics_url: http://10.1.2.3:9100/metrics
    country: FR
    operator: {name: Example SAS, jurisdiction: FR}
    self_hosted: true
  partner-lille:
    kind: openai_compatible
    base_url: https://192.0.2.10/v1
    country: FR
    operator: {name: Partner SAS, jurisdiction: FR}
models:
  mistral-small: {developer: Mistral AI, developer_country: FR, open_weights: true}
deployments:
  - {model: mistral-small, backend: onprem-lyon, upstream_model: mistral-small}
  - {model: mistral-small, backend: partner-lille, upstream_model: mistral-small-2503}
"""
OWN: dict[str, Any] = {
    "policies": {"files": {"catalog.yaml": OWN_CATALOG}},
    "networkPolicy": {"enabled": True},
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "full": FULL,
    "existing": EXISTING,
    "own-catalog": OWN,
}


def load_chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every manifest the chart renders for `values`, parsed."""
    rendered = load_chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if path.endswith(".txt"):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def notes(values: dict[str, Any]) -> str:
    rendered = load_chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def one(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def policy_files(manifests: list[dict[str, Any]], into: Path) -> Path:
    """Lay out the policies and keys as the gateway's pod sees them, from the rendered objects."""
    deployment = one(manifests, "Deployment", f"{RELEASE}-sovereign-gateway")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    configmap = one(manifests, "ConfigMap", volumes["policies"]["configMap"]["name"])
    for item in volumes["policies"]["configMap"]["items"]:
        target = into / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(configmap["data"][item["key"]])
    secret = one(manifests, "Secret", volumes["keys"]["secret"]["secretName"])
    (into / "keys.yaml").write_text(secret["stringData"]["keys.yaml"])
    return into


def chart_file(name: str) -> Path:
    return CHART / "files" / name
