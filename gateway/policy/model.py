"""A loaded policy as the engine and the compiler take it: pure data, no I/O.

`load.py` builds a `PolicySet` from a directory (country groups flattened, every file validated);
the engine, the compiler and the policy tests take it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.policy.schema import Catalog, Tenant
from gateway.problems import Problem


@dataclass(frozen=True)
class PolicySet:
    revision: str
    groups: dict[str, frozenset[str]]
    catalog: Catalog
    tenants: dict[str, Tenant]
    warnings: tuple[Problem, ...] = field(default=())
    tenant_files: dict[str, str] = field(default_factory=dict)

    def expand(self, places: Iterable[str]) -> frozenset[str]:
        """Countries named directly or through groups (groups are already flattened)."""
        out: set[str] = set()
        for place in places:
            out |= self.groups.get(place, frozenset((place,)))
        return frozenset(out)
