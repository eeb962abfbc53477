"""What the audit record and the metrics say about each deployment, worked out once per policy
revision: where it runs, who controls its operator, where its weights come from.

A `CompiledPolicy` holds one table of these for its revision, so a request in flight across a
reload keeps the facts of the revision it was routed under, and nothing needs evicting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.policy.schema import Catalog


@dataclass(frozen=True, slots=True)
class DeploymentFacts:
    # the audit record's `deployment` object: a plain dict, which orjson writes, shared by every
    # record of the revision and never changed
    record: Mapping[str, Any]
    country: str  # where inference runs
    jurisdiction: str  # the jurisdiction at the top of the operator's control chain
    provider: str  # the provider's name, or the backend's kind


def deployment_facts(catalog: Catalog) -> Mapping[str, DeploymentFacts]:
    """The facts of every deployment in the catalog, by deployment id."""
    table: dict[str, DeploymentFacts] = {}
    for dep in catalog.deployments:
        backend = catalog.backends[dep.backend]
        chain = backend.operator.control_chain()
        record = {
            "id": dep.id,
            "backend": dep.backend,
            "model": dep.model,
            "upstream_model": dep.upstream_model,
            "inference_country": backend.country,
            "operator": backend.operator.name,
            "operator_control_chain": list(chain),
            "weights_origin": catalog.models[dep.model].developer_country,
            "self_hosted": backend.self_hosted,
        }
        table[dep.id] = DeploymentFacts(
            record=record,
            country=backend.country,
            jurisdiction=chain[-1],
            provider=backend.provider or backend.kind.value,
        )
    return MappingProxyType(table)
