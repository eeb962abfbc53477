"""How policy cost grows: load, compile, memory and per-request lookup at 10,000 tenants x 1,000
deployments.

Writes a synthetic policy directory (250 models on 40 backends, 4 deployments each; tenants drawn
from realistic rule templates with their own allow-lists, aliases and data classes), then measures,
each in a fresh process so that memory figures are not mixed up:

- load: reading and validating every YAML file (`load_policy_dir`);
- compile: evaluating rules into bitsets (`CompiledPolicy`);
- memory: RSS growth and Python-allocated bytes of the compiled policy;
- lookup: `CompiledPolicy.route` for random (tenant, model, data class), as a request does it,
  once computed from the bitsets and once again from the route cache.

    python -m bench.policy_scale [--tenants 10000] [--deployments 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

COUNTRIES = [
    "FR",
    "DE",
    "NL",
    "IE",
    "SE",
    "IT",
    "ES",
    "PL",
    "LU",
    "NO",
    "CH",
    "GB",
    "US",
    "CN",
    "JP",
]
TEMPLATES = [
    {"inference_country": {"allow": ["EU"]}},
    {"inference_country": {"allow": ["EEA"]}, "operator_control": {"deny": ["US", "CN"]}},
    {"inference_country": {"allow": ["FR"]}, "self_hosted": True, "attestations": ["secnumcloud"]},
    {"weights_origin": {"allow": ["EU"]}, "open_weights": True},
    {"operator_control": {"allow": ["EEA"]}, "attestations": ["zero_data_retention"]},
    {"inference_country": {"deny": ["US", "CN"]}},
    {},
]
KINDS = ["zero_data_retention", "secnumcloud", "bsi_c5", "iso_27001", "signed_dpa"]


def write_policy(directory: Path, tenants: int, deployments: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    backends_n = 40
    per_model = 4
    models_n = deployments // per_model
    (directory / "tenants").mkdir(parents=True)
    (directory / "groups.yaml").write_text(
        yaml.safe_dump(
            {
                "groups": {
                    "EU": {"countries": ["FR", "DE", "NL", "IE", "SE", "IT", "ES", "PL", "LU"]},
                    "EEA": {"include": ["EU"], "countries": ["NO"]},
                }
            }
        )
    )
    backends = {}
    for i in range(backends_n):
        chain = [rng.choice(COUNTRIES) for _ in range(rng.randint(1, 3))]
        backends[f"b{i:03d}"] = {
            "kind": "openai_compatible",
            "base_url": f"http://10.0.{i // 250}.{i % 250}:8000/v1",
            "country": rng.choice(COUNTRIES),
            "operator": {
                "name": f"Operator {i}",
                "jurisdiction": chain[0],
                "parents": [
                    {"name": f"Parent {i}.{j}", "jurisdiction": c} for j, c in enumerate(chain[1:])
                ],
            },
            "self_hosted": rng.random() < 0.3,
            "attestations": [
                {"kind": k, "expires": dt.date(2027, rng.randint(1, 12), 1), "evidence": "ref"}
                for k in rng.sample(KINDS, rng.randint(0, 3))
            ],
        }
    models = {
        f"family{i % 25:02d}-m{i:03d}": {
            "developer": f"Lab {i % 30}",
            "developer_country": rng.choice(COUNTRIES),
            "open_weights": rng.random() < 0.6,
        }
        for i in range(models_n)
    }
    deps = [
        {"model": m, "backend": b, "upstream_model": m, "priority": rng.randint(0, 2)}
        for m in models
        for b in rng.sample(sorted(backends), per_model)
    ]
    (directory / "catalog.yaml").write_text(
        yaml.safe_dump({"backends": backends, "models": models, "deployments": deps})
    )
    names = sorted(models)
    for t in range(tenants):
        allow = [f"family{rng.randrange(25):02d}-*" for _ in range(rng.randint(1, 4))]
        allow += rng.sample(names, rng.randint(0, 5))
        tenant = {
            "tenant": f"tenant-{t:05d}",
            "models": allow,
            "aliases": {"chat-default": rng.sample(names, 3)},
            "rules": rng.choice(TEMPLATES),
            "data_classes": {
                "confidential": {"rules": {"self_hosted": True}},
                "secret": {"rules": rng.choice(TEMPLATES)},
            }
            if rng.random() < 0.5
            else {},
        }
        (directory / "tenants" / f"tenant-{t:05d}.yaml").write_text(yaml.safe_dump(tenant))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(directory: Path, lookups: int) -> dict[str, float]:
    """Runs in its own process."""
    from gateway.errors import GatewayError
    from gateway.policy.compile import CompiledPolicy
    from gateway.policy.load import load_policy_dir

    base_rss = _rss_mb()
    started = time.perf_counter()
    policy = load_policy_dir(directory)
    loaded = time.perf_counter()
    rss_loaded = _rss_mb()
    compile_started = time.perf_counter()
    compiled = CompiledPolicy(policy, dt.date(2026, 11, 23))
    compile_s = time.perf_counter() - compile_started
    rss_compiled = _rss_mb()
    tracemalloc.start()  # a second compilation, traced, for the bytes it allocates and keeps
    traced = CompiledPolicy(policy, dt.date(2026, 11, 23))
    compiled_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced
    rng = random.Random(1)
    tenants = sorted(policy.tenants)
    queries = []
    for _ in range(lookups):
        tenant = rng.choice(tenants)
        name = rng.choice(compiled.public_names(tenant))
        classes = [None, *compiled.data_classes(tenant)]
        queries.append((tenant, name, rng.choice(classes)))
    eligible = 0
    passes = []
    for _ in range(2):  # first: computed from the bitsets; second: the route cache
        eligible = 0
        t0 = time.perf_counter()
        for tenant, name, data_class in queries:
            with contextlib.suppress(GatewayError):
                eligible += len(compiled.route(tenant, name, data_class).eligible)
        passes.append((time.perf_counter() - t0) / lookups)
    return {
        "tenants": len(policy.tenants),
        "deployments": len(policy.catalog.deployments),
        "load_s": loaded - started,
        "compile_s": compile_s,
        "rss_policy_mb": rss_loaded - base_rss,
        "rss_compiled_mb": rss_compiled - rss_loaded,
        "compiled_mb": compiled_bytes / 2**20,
        "lookup_us": passes[0] * 1e6,
        "cached_lookup_us": passes[1] * 1e6,
        "mean_eligible": eligible / lookups,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--deployments", type=int, default=1_000)
    parser.add_argument("--lookups", type=int, default=50_000)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.lookups)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "policies"
        t0 = time.perf_counter()
        write_policy(directory, args.tenants, args.deployments)
        print(
            f"wrote {args.tenants} tenants x {args.deployments} deployments in {time.perf_counter() - t0:.1f}s"
        )
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.policy_scale",
                "--measure",
                str(directory),
                "--lookups",
                str(args.lookups),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    r = json.loads(out.stdout)
    print(
        "| tenants | deployments | load s | compile s | RSS policy MB | RSS compiled MB | compiled MB (traced) | lookup µs | cached µs | mean eligible |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {r['tenants']:,} | {r['deployments']:,} | {r['load_s']:.1f} | {r['compile_s']:.2f} | "
        f"{r['rss_policy_mb']:.0f} | {r['rss_compiled_mb']:.0f} | {r['compiled_mb']:.1f} | "
        f"{r['lookup_us']:.2f} | {r['cached_lookup_us']:.2f} | {r['mean_eligible']:.2f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
