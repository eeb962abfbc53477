"""The keys file's YAML model: one entry per API key, with its role, tenant, hash and validity.

A key names its tenant by the tenant's name; whether that tenant has a policy is checked by what
knows both files (`policy check`), not here.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

# a tenant's name, spelt as the policy's schema spells it (a test keeps the two the same)
TENANT_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
KEY_ID_PATTERN = r"^[a-z0-9]{8,32}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    TENANT = "tenant"
    ADMIN = "admin"
    AUDITOR = "auditor"


def _timestamp(value: object) -> object:
    """A date is 00:00 UTC that day; a time must say its zone, or the same file would mean
    different instants to replicas in different zones."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    if isinstance(value, str) and len(value) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ]
        }
    ),
]


class ApiKeyEntry(Strict):
    id: Annotated[str, Field(pattern=KEY_ID_PATTERN)]
    role: Role = Field(
        default=Role.TENANT,
        description="tenant: the OpenAI API; admin: policy admin API; auditor: audit API",
    )
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN)] | None = Field(
        default=None, description="required for the tenant role"
    )
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    label: str = ""
    disabled: bool = False
    created: Timestamp | None = Field(
        default=None, description="when the key was made (written by `keys new` and `keys rotate`)"
    )
    expires: Timestamp | None = Field(
        default=None,
        description="the key is refused (401 expired_api_key) from this time on; a date means"
        " 00:00 UTC that day",
    )

    @model_validator(mode="after")
    def _tenant_role_has_tenant(self) -> ApiKeyEntry:
        if self.role is Role.TENANT and self.tenant is None:
            raise ValueError("a key with role tenant needs `tenant`")
        return self


class KeysFile(Strict):
    keys: list[ApiKeyEntry]
