"""JSON Schemas of the files an admin writes (policy, keys, policy tests), generated from the
pydantic models.

They are committed under `policies/schema/` so that editors (through the `yaml-language-server`
comment at the top of each file) complete and check policy YAML; a test keeps them in step with
the models. Regenerate with `sovereign-gateway policy schema --out policies/schema`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.auth.schema import KeysFile
from gateway.policy.cases import CaseFile
from gateway.policy.schema import Catalog, GroupsFile, Tenant

SCHEMAS: dict[str, type[BaseModel]] = {
    "groups.schema.json": GroupsFile,
    "catalog.schema.json": Catalog,
    "tenant.schema.json": Tenant,
    "keys.schema.json": KeysFile,
    "policy-test.schema.json": CaseFile,
}


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


def render(model: type[BaseModel]) -> str:
    return json.dumps(schema_of(model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = directory / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(directory: Path) -> list[str]:
    """Files under `directory` that differ from what the models generate."""
    stale = []
    for name, model in SCHEMAS.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(model):
            stale.append(name)
    return stale
