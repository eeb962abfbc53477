"""The YAML model admins write: country groups, the catalog (backends, models, deployments),
tenants.

Everything here is declarative and validated on load. Cross-file references (a deployment naming a
backend, a rule naming a group) are checked in `load.py`, which knows all files at once.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    model_validator,
)

from gateway.policy.apis import Api

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
GROUP_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")


def _place(value: str) -> str:
    """A country code or a group name, normalised so that ' fr ' and 'FR' are the same place."""
    normalised = value.strip().upper()
    if not normalised:
        raise ValueError("empty country or group")
    return normalised


Place = Annotated[str, AfterValidator(_place)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttestationKind(StrEnum):
    ZERO_DATA_RETENTION = "zero_data_retention"
    NO_TRAINING = "no_training_on_inputs"
    DPA = "signed_dpa"
    SECNUMCLOUD = "secnumcloud"
    BSI_C5 = "bsi_c5"
    ISO_27001 = "iso_27001"
    HDS = "hds"


class BackendKind(StrEnum):
    VLLM = "vllm"
    OPENAI_COMPATIBLE = "openai_compatible"
    LITELLM = "litellm"


class ProviderCredential(StrEnum):
    """Credentials a litellm provider takes besides an API key; values come from the environment."""

    AWS_ACCESS_KEY_ID = "aws_access_key_id"
    AWS_SECRET_ACCESS_KEY = "aws_secret_access_key"  # noqa: S105 - a parameter's name
    AWS_SESSION_TOKEN = "aws_session_token"  # noqa: S105 - a parameter's name
    VERTEX_CREDENTIALS = "vertex_credentials"  # a service-account JSON, or the path to one


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")]


# ---- geography -------------------------------------------------------------------------------


class CountryGroup(Strict):
    description: str = ""
    countries: list[Place] = []
    include: list[Place] = Field(default=[], description="other groups whose countries belong here")


class GroupsFile(Strict):
    groups: dict[str, CountryGroup]


# ---- catalog ---------------------------------------------------------------------------------


class Attestation(Strict):
    kind: AttestationKind
    expires: dt.date = Field(description="the attestation counts as absent from this day on")
    evidence: str = Field(min_length=1, description="where an auditor finds the proof")


class Controller(Strict):
    name: str
    jurisdiction: Place


class Operator(Strict):
    name: str = Field(min_length=1)
    jurisdiction: Place
    parents: list[Controller] = Field(
        default=[], description="companies that control the operator, nearest first"
    )

    def control_chain(self) -> tuple[str, ...]:
        return (self.jurisdiction, *(p.jurisdiction for p in self.parents))


class BackendTLS(Strict):
    """How to reach an HTTPS backend: a private CA, a client certificate (mutual TLS).

    Relative paths are taken from the policy directory."""

    ca_file: str | None = Field(
        default=None, description="PEM bundle of the CAs to trust instead of the system's"
    )
    cert_file: str | None = Field(default=None, description="client certificate chain (PEM)")
    key_file: str | None = Field(default=None, description="the client certificate's key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> BackendTLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.ca_file is None and self.cert_file is None:
            raise ValueError("`tls` needs ca_file, or cert_file and key_file, or all three")
        return self


class Backend(Strict):
    kind: BackendKind
    base_url: HttpUrl
    country: Place = Field(description="ISO 3166-1 alpha-2 code of where inference runs")
    operator: Operator
    self_hosted: bool = False
    attestations: list[Attestation] = []
    apis: list[Api] = [Api.CHAT, Api.COMPLETIONS, Api.EMBEDDINGS]
    metrics_url: HttpUrl | None = Field(default=None, description="vLLM /metrics, for load")
    probe_path: str | None = Field(
        default="auto",
        pattern=r"^(auto|/[A-Za-z0-9._~/-]*)$",
        description="health probe: a path on the backend's host (e.g. /health), `auto` (vllm:"
        " /health; other kinds: /models under the base URL; litellm: none), or null for no probe",
    )
    provider: str | None = Field(
        default=None, description="litellm provider prefix, e.g. anthropic, azure, bedrock"
    )
    api_key_env: EnvName | None = Field(
        default=None,
        description="name of the environment variable holding this backend's API key",
    )
    api_version: str | None = Field(default=None, description="e.g. Azure OpenAI's api-version")
    region: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9-]+$",
        description="the provider's region: AWS Bedrock's region, Vertex AI's location",
    )
    project: str | None = Field(default=None, description="Vertex AI's Google Cloud project")
    credentials_env: dict[ProviderCredential, EnvName] = Field(
        default={},
        description="provider credentials, each read from the environment variable named here",
    )
    tls: BackendTLS | None = Field(
        default=None, description="private CA and client certificate (vllm, openai_compatible)"
    )
    description: str = ""

    @model_validator(mode="after")
    def _tls_scheme(self) -> Backend:
        if self.tls is not None and self.base_url.scheme != "https":
            raise ValueError("`tls` needs an https:// base_url")
        if self.tls is not None and self.kind is BackendKind.LITELLM:
            raise ValueError("`tls` applies to vllm and openai_compatible backends")
        return self


class Model(Strict):
    developer: str = Field(min_length=1)
    developer_country: Place | None = None
    open_weights: bool | None = None
    license: str | None = None
    description: str = ""


class Deployment(Strict):
    model: Name
    backend: Name
    upstream_model: str = Field(min_length=1, description="the model name the upstream expects")
    priority: int = Field(default=0, ge=0, description="lower tiers are tried first")
    weight: int = Field(default=1, ge=1)

    @cached_property
    def id(self) -> str:  # asked for several times per request
        return f"{self.model}@{self.backend}"


class Catalog(Strict):
    backends: dict[Name, Backend]
    models: dict[Name, Model]
    deployments: list[Deployment]


# ---- tenants ---------------------------------------------------------------------------------


class PlaceRule(Strict):
    allow: list[Place] | None = Field(
        default=None, description="countries or groups; all others fail"
    )
    deny: list[Place] = []

    @model_validator(mode="after")
    def _not_empty(self) -> PlaceRule:
        if self.allow is None and not self.deny:
            raise ValueError("a rule needs `allow` or `deny`")
        return self


class Rules(Strict):
    inference_country: PlaceRule | None = None
    operator_control: PlaceRule | None = Field(
        default=None, description="checked against the operator and every parent company"
    )
    weights_origin: PlaceRule | None = None
    open_weights: Literal[True] | None = None
    self_hosted: Literal[True] | None = None
    attestations: list[AttestationKind] = []


class DataClass(Strict):
    description: str = ""
    rules: Rules = Rules()


class KeyLimits(Strict):
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="admitted on an estimate (request bytes / 4 + max_tokens), reconciled with"
        " the usage the answer reports",
    )
    concurrent_requests: int | None = Field(
        default=None, ge=1, description="answers and streams under way at once"
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="a request asking for more is refused (400 max_tokens_exceeded); one asking"
        " for nothing is sent with this as its max_tokens",
    )
    tokens_per_month: int | None = Field(
        default=None, ge=1, description="prompt and completion tokens per calendar month (UTC)"
    )


class Limits(KeyLimits):
    keys: dict[Annotated[str, Field(pattern=r"^[a-z0-9]{8,32}$")], KeyLimits] = Field(
        default={},
        description="limits of one API key (by key id), applied as well as the tenant's",
    )


class AuditContent(StrEnum):
    NONE = "none"
    HASH = "hash"
    FULL = "full"


class TenantAudit(Strict):
    content: AuditContent = AuditContent.NONE


class Tenant(Strict):
    tenant: Name
    description: str = ""
    models: list[str] = Field(
        min_length=1,
        description="allowed catalog model names, or patterns matched as fnmatch does against the"
        " whole name, case-sensitive: * any run of characters (. and - included), ? one"
        " character, [seq] / [!seq] one character in / not in seq",
    )
    aliases: dict[Name, list[Name]] = {}
    rules: Rules = Rules()
    data_classes: dict[Name, DataClass] = {}
    default_data_class: Name | None = None
    limits: Limits = Limits()
    audit: TenantAudit = TenantAudit()

    @model_validator(mode="after")
    def _default_class_exists(self) -> Tenant:
        if self.default_data_class is not None and self.default_data_class not in self.data_classes:
            raise ValueError(
                f"default_data_class {self.default_data_class!r} is not in data_classes"
            )
        return self
