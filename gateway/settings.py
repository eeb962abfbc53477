"""Settings: the only module that reads the environment.

Precedence, highest first: explicit overrides (command-line flags), environment variables prefixed
`SGW_`, the YAML config file (`--config`, `SGW_CONFIG_FILE`, or `sovereign-gateway.yaml` in the
current directory), the defaults below. Relative paths in the YAML file are taken from the file's
directory, so a directory made by `sovereign-gateway init` works from wherever it is started.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "SGW_"
SETTINGS_FILE = "sovereign-gateway.yaml"  # looked for in the current directory
PATH_SETTINGS = (
    "policy_dir",
    "keys_file",
    "audit_signing_key_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8080
    policy_dir: Path = Path("policies")
    keys_file: Path | None = Field(
        default=None, description="API keys file; defaults to keys.yaml in the policy directory"
    )
    policy_watch_interval_s: float = Field(
        default=2.0, ge=0, description="how often to look for changed policy files; 0: never"
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="a connection must send complete request headers in this"
    )
    max_connections: int = Field(
        default=4096, ge=1, description="open client connections; beyond, 503 and closed"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_byte_timeout_s: float = Field(
        default=120.0, gt=0, description="a non-streamed answer may take this long to start"
    )
    stream_first_byte_timeout_s: float = Field(
        default=20.0,
        gt=0,
        description="a stream's first event may take this long; past it the attempt counts as a"
        " timeout against the deployment's health and the request tries the next deployment",
    )
    idle_timeout_s: float = Field(default=60.0, gt=0)
    request_deadline_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    pool_size_per_backend: int = Field(default=256, ge=1)
    health_probe_interval_s: float = Field(
        default=5.0, ge=0, description="active probes of every backend; 0: off"
    )
    health_probe_timeout_s: float = Field(default=2.0, gt=0)
    vllm_metrics_interval_s: float = Field(
        default=2.0, ge=0, description="read vLLM backends' /metrics for load; 0: off"
    )
    outlier_consecutive_failures: int = Field(
        default=5, ge=1, description="connect errors, timeouts or 5xx in a row that eject"
    )
    outlier_tenants_for_all: int = Field(
        default=2,
        ge=1,
        description="tenants whose requests it takes to eject a deployment for every tenant;"
        " fewer eject it only for the tenants whose requests failed (connect errors: always all)",
    )
    outlier_base_ejection_s: float = Field(default=5.0, gt=0)
    outlier_max_ejection_s: float = Field(default=300.0, gt=0)
    metrics_path: str = Field(default="/metrics", pattern=r"^/[a-z0-9/_-]*$")
    metrics_token: SecretStr | None = Field(
        default=None, description="if set, /metrics needs 'Authorization: Bearer <token>'"
    )
    metrics_tenant_label: bool = Field(default=True, description="label metrics by tenant")
    metrics_max_tenants: int = Field(
        default=100, ge=1, description="tenants beyond this many are labelled 'other'"
    )
    audit_enabled: bool = Field(default=True, description="off only for benchmarks")
    audit_store: str = Field(
        default="sqlite:var/audit.sqlite3",
        description="sqlite:PATH, or a postgresql:// DSN for production",
    )
    audit_log_id: str | None = Field(
        default=None, description="this replica's log; defaults to <hostname>-<port>"
    )
    audit_signing_key_file: Path = Field(
        default=Path("var/audit-signing-key.pem"),
        description="Ed25519 private key (PEM); created with mode 0600 when missing",
    )
    audit_signing_key: SecretStr | None = Field(
        default=None, description="the PEM itself, e.g. from a secret; wins over the file"
    )
    audit_batch_max: int = Field(default=512, ge=1)
    audit_checkpoint_every: int = Field(default=1000, ge=1)
    audit_checkpoint_interval_s: float = Field(default=10.0, gt=0)
    audit_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="longest a request waits for its audit record (and a batch for its commit)"
        " before it is answered 503 audit_unavailable",
    )
    console_session_s: float = Field(
        default=8 * 3600, gt=0, description="how long a console sign-in lasts, in seconds"
    )
    console_session_secret: SecretStr | None = Field(
        default=None,
        description="signs console session cookies; one per process when unset (sign-ins "
        "then end with a restart)",
    )
    limits_store: str = Field(
        default="memory",
        pattern=r"^(memory|rediss?://.+)$",
        description="memory (one process; the month's budget restarts with it) or a redis://"
        " URL shared by every replica",
    )
    limits_fail_open: bool = Field(
        default=False,
        description="when the limits store cannot be reached: false refuses with 503"
        " limits_unavailable, true lets requests through without limits (counted)",
    )
    limits_timeout_s: float = Field(
        default=0.25, gt=0, description="the longest a request waits for the limits store"
    )
    limits_key_prefix: str = Field(
        default="sgw:limits:", description="prefix of every Redis key of the limits"
    )
    limits_lease_s: float = Field(
        default=900.0,
        gt=0,
        description="a concurrency slot whose release was lost (a replica killed) frees itself"
        " after this",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    access_log: bool = True
    tls_cert_file: Path | None = Field(
        default=None, description="serve HTTPS with this certificate chain (PEM)"
    )
    tls_key_file: Path | None = Field(default=None, description="the certificate's private key")
    tls_ca_file: Path | None = Field(
        default=None, description="if set, clients must present a certificate signed by this CA"
    )
    tls_reload_interval_s: float = Field(
        default=10.0, ge=0, description="how often to look for a renewed certificate; 0: never"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_ca_file needs tls_cert_file and tls_key_file")
        return self

    def resolved_keys_file(self) -> Path:
        return self.keys_file if self.keys_file is not None else self.policy_dir / "keys.yaml"


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build settings from overrides, the environment and an optional YAML file."""
    path = config_file or _env_path(ENV_PREFIX + "CONFIG_FILE")
    if path is None and Path(SETTINGS_FILE).is_file():
        path = Path(SETTINGS_FILE)

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(_SettingsFile(settings_cls, path))
            return tuple(sources)

    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings.model_validate(_FromFile(**values).model_dump())  # type: ignore[arg-type]


class _SettingsFile(PydanticBaseSettingsSource):
    """The YAML settings file, its relative paths taken from the file's own directory."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        data = yaml.safe_load(self._path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{self._path}: the settings file must be a mapping")
        return {key: _relative_to(self._path.parent, key, value) for key, value in data.items()}


def _relative_to(base: Path, key: str, value: Any) -> Any:
    if key in PATH_SETTINGS and isinstance(value, str) and not Path(value).is_absolute():
        return str(base / value)
    if key == "audit_store" and isinstance(value, str) and value.startswith("sqlite:"):
        file = value.removeprefix("sqlite:")
        return value if Path(file).is_absolute() else f"sqlite:{base / file}"
    return value


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
