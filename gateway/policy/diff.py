"""The impact of a policy change: which tenant, asking for which name under which data class,
gains or loses which deployments. For review before merge (`policy diff OLD NEW`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.policy.compile import CompiledPolicy


@dataclass(frozen=True)
class Change:
    tenant: str
    requested: str
    data_class: str | None
    gained: tuple[str, ...]
    lost: tuple[str, ...]
    note: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "model": self.requested,
            "data_class": self.data_class,
            "gained": list(self.gained),
            "lost": list(self.lost),
            "note": self.note,
        }

    def __str__(self) -> str:
        where = f"{self.tenant} / {self.requested}"
        if self.data_class:
            where += f" [{self.data_class}]"
        parts = [f"+{d}" for d in self.gained] + [f"-{d}" for d in self.lost]
        return f"{where}: {' '.join(parts)}" + (f"  ({self.note})" if self.note else "")


def diff(old: CompiledPolicy, new: CompiledPolicy) -> list[Change]:
    changes: list[Change] = []
    for tenant in sorted(set(old.policy.tenants) | set(new.policy.tenants)):
        note = ""
        if not old.has_tenant(tenant):
            note = "new tenant"
        elif not new.has_tenant(tenant):
            note = "tenant removed"
        classes = [None, *sorted(set(old.data_classes(tenant)) | set(new.data_classes(tenant)))]
        names = sorted(set(_names(old, tenant)) | set(_names(new, tenant)))
        for data_class in classes:
            for name in names:
                before = _eligible(old, tenant, name, data_class)
                after = _eligible(new, tenant, name, data_class)
                if before != after:
                    gained = tuple(d for d in after if d not in before)
                    lost = tuple(d for d in before if d not in after)
                    order = "" if gained or lost else "order of preference changed"
                    changes.append(Change(tenant, name, data_class, gained, lost, note or order))
    return changes


def _names(compiled: CompiledPolicy, tenant: str) -> list[str]:
    return compiled.public_names(tenant) if compiled.has_tenant(tenant) else []


def _eligible(
    compiled: CompiledPolicy, tenant: str, name: str, data_class: str | None
) -> tuple[str, ...]:
    if not compiled.has_tenant(tenant):
        return ()
    try:
        return tuple(d.id for d in compiled.route(tenant, name, data_class).eligible)
    except GatewayError:
        return ()
