"""Settings: the only module that reads the environment.

Precedence, highest first: explicit overrides (command-line flags), environment variables prefixed
`SGW_`, the YAML config file (`SGW_CONFIG_FILE` or `--config`), the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "SGW_"


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
    first_byte_timeout_s: float = Field(default=120.0, gt=0)
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

    def resolved_keys_file(self) -> Path:
        return self.keys_file if self.keys_file is not None else self.policy_dir / "keys.yaml"


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build settings from overrides, the environment and an optional YAML file."""
    path = config_file or _env_path(ENV_PREFIX + "CONFIG_FILE")

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
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            return tuple(sources)

    values = {k: v for k, v in overrides.items() if v is not None}
    return Settings.model_validate(_FromFile(**values).model_dump())  # type: ignore[arg-type]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
