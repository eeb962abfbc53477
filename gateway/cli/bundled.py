"""The files the package ships beside its code: the example policies (with their JSON Schemas and
policy tests), the Grafana dashboard and the Prometheus alert rules.

The repository's `policies/` and `deploy/` are the source: a wheel carries copies made at build
time under `gateway/bundled/` (`setup.py`), and a source checkout reads the repository's own files,
so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_POLICIES = "policies"
GRAFANA_DASHBOARD = "deploy/grafana/sovereign-gateway.json"
ALERT_RULES = "deploy/prometheus/alerts.yaml"


def bundled(name: str) -> Path:
    """The shipped file or directory `name` (a path as it is in the repository)."""
    package = Path(__file__).resolve().parent.parent  # gateway/
    for candidate in (package / "bundled" / name, package.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{name} is not shipped with this installation of the gateway")
