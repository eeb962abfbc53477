"""A million audit records for the console benchmark, in the audit record's real shape.

Records are built as `gateway/audit/record.py` builds them (canonical JSON, leaf hashes, a signed
checkpoint at the end) and written through the store's own `append_batch`, so the store holds what
a gateway that served them would hold. The mix: 40 tenants over 30 days, 92% allowed, 6% refused
by policy, 2% errors; five inference countries, US control chains on some providers.
"""

from __future__ import annotations

import random
import time
from typing import Any

from gateway.audit.canonical import canonical
from gateway.audit.merkle import Frontier, leaf_hash
from gateway.audit.record import rfc3339
from gateway.audit.signing import Signer
from gateway.audit.store import AuditStore, StoredRecord

DEPLOYMENTS: list[dict[str, Any]] = [
    {
        "id": "mistral-small@scaleway-paris",
        "backend": "scaleway-paris",
        "model": "mistral-small",
        "upstream_model": "mistral-small-3.1",
        "inference_country": "FR",
        "operator": "Scaleway SAS",
        "operator_control_chain": ["FR"],
        "weights_origin": "FR",
        "self_hosted": False,
    },
    {
        "id": "llama-3-70b@onprem-frankfurt",
        "backend": "onprem-frankfurt",
        "model": "llama-3-70b",
        "upstream_model": "llama-3-70b",
        "inference_country": "DE",
        "operator": "Example Bank AG",
        "operator_control_chain": ["DE"],
        "weights_origin": "US",
        "self_hosted": True,
    },
    {
        "id": "gpt-4o@azure-amsterdam",
        "backend": "azure-amsterdam",
        "model": "gpt-4o",
        "upstream_model": "gpt-4o",
        "inference_country": "NL",
        "operator": "Microsoft Ireland Operations Ltd",
        "operator_control_chain": ["IE", "US"],
        "weights_origin": "US",
        "self_hosted": False,
    },
    {
        "id": "claude-sonnet@bedrock-frankfurt",
        "backend": "bedrock-frankfurt",
        "model": "claude-sonnet",
        "upstream_model": "claude-sonnet",
        "inference_country": "DE",
        "operator": "Amazon Web Services EMEA SARL",
        "operator_control_chain": ["LU", "US"],
        "weights_origin": "US",
        "self_hosted": False,
    },
    {
        "id": "gpt-4o@openai-us",
        "backend": "openai-us",
        "model": "gpt-4o",
        "upstream_model": "gpt-4o",
        "inference_country": "US",
        "operator": "OpenAI OpCo LLC",
        "operator_control_chain": ["US"],
        "weights_origin": "US",
        "self_hosted": False,
    },
]
RULES = ["operator_control", "inference_country", "data_class[secret].self_hosted"]
ERRORS = [(429, "rate_limit_error", "rate_limited"), (502, "api_error", "upstream_error")]
DAYS = 30


def make_record(rng: random.Random, i: int, start: float, step: float) -> dict[str, Any]:
    tenant = f"tenant-{rng.randrange(40):02d}"
    dep = rng.choice(DEPLOYMENTS)
    roll = rng.random()
    record: dict[str, Any] = {
        "v": 1,
        "time": rfc3339(start + i * step),
        "request_id": f"req-{i:010d}",
        "decision_id": f"dec-{i:010d}",
        "tenant": tenant,
        "key_id": f"k{tenant[-2:]}",
        "api": "chat.completions",
        "requested_model": dep["model"],
        "stream": rng.random() < 0.4,
        "status": 200,
        "duration_us": rng.randrange(80_000, 2_000_000),
        "first_byte_us": rng.randrange(20_000, 400_000),
        "attempts": [{"deployment": dep["id"], "outcome": "ok", "duration_us": 90_000}],
        "usage": {"prompt_tokens": rng.randrange(10, 900), "completion_tokens": 120},
        "policy_revision": "sha256:3f2a9c" if i < 700_000 else "sha256:8b41d0",
        "models": [dep["model"]],
        "data_class": rng.choice([None, "internal", "secret"]),
        "decision": "allowed",
        "refusal": None,
        "deployment": dep,
        "error": None,
    }
    if roll < 0.06:
        refused = [d for d in DEPLOYMENTS if d["model"] == dep["model"]]
        record.update(
            status=403,
            decision="refused",
            deployment=None,
            attempts=[],
            usage=None,
            first_byte_us=None,
            refusal={
                "candidates": [
                    {"deployment": d["id"], "failed_rules": [rng.choice(RULES)]} for d in refused
                ]
            },
            error={"type": "permission_error", "code": "policy_violation"},
        )
    elif roll < 0.08:
        status, kind, code = rng.choice(ERRORS)
        record.update(status=status, error={"type": kind, "code": code}, usage=None)
    return record


async def fill(store: AuditStore, log_id: str, count: int, signer: Signer, seed: int = 7) -> None:
    """Append `count` records to `log_id` (which must be empty) and sign a checkpoint over them."""
    rng = random.Random(seed)
    start = time.time() - DAYS * 86_400
    step = DAYS * 86_400 / count
    frontier = Frontier()
    batch: list[StoredRecord] = []
    for i in range(count):
        record = make_record(rng, i, start, step)
        record["log_id"], record["seq"] = log_id, i
        body = canonical(record, check=False)
        leaf = leaf_hash(body)
        frontier.append(leaf)
        batch.append(StoredRecord(log_id, i, record["time"], record["tenant"], leaf, body))
        if len(batch) == 5_000:
            await store.append_batch(batch)
            batch = []
    if batch:
        await store.append_batch(batch)
    await store.checkpoint(signer.sign(log_id, count, frontier.root(), rfc3339(time.time())))
