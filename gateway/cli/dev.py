"""`sovereign-gateway demo | simulate`: the tour and the simulated backends of `gateway.dev`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from pathlib import Path
from typing import Any

from gateway.cli.init import missing_policy_dir
from gateway.dev.extra import missing_demo_extra
from gateway.policy.load import load_policy_dir


def add_dev_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="a scripted tour through the official OpenAI SDK")
    demo.add_argument("--base-url", help="use a running gateway instead of starting one")
    demo.add_argument(
        "--policy-dir", type=Path, help="default: the example policies shipped with the package"
    )
    demo.set_defaults(func=_demo)

    simulate = sub.add_parser("simulate", help="run simulated vLLM backends (tests and demos)")
    simulate.add_argument("--policy-dir", type=Path, default=Path("policies"))
    simulate.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate")
    simulate.add_argument("--tls-key", type=Path)
    simulate.add_argument("--tls-client-ca", type=Path, help="require client certificates")
    simulate.set_defaults(func=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    if problem := missing_demo_extra("simulate", "aiohttp"):
        print(problem, file=sys.stderr)
        return 2
    from gateway.dev.simulator.catalog import simulated_backends
    from gateway.dev.simulator.launch import READY
    from gateway.dev.simulator.server import SimulatorBindError, run_backends

    if (problem := missing_policy_dir(args.policy_dir)) is not None:
        print(problem, file=sys.stderr)
        return 2
    specs = simulated_backends(load_policy_dir(args.policy_dir).catalog)
    for name, port, models in specs:
        print(f"simulated {name} on 127.0.0.1:{port} serving {', '.join(models)}", flush=True)
    context = None
    if args.tls_cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.tls_client_ca)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        context.verify_mode = ssl.CERT_REQUIRED if args.tls_client_ca else ssl.CERT_NONE
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                run_backends(specs, on_ready=lambda: print(READY, flush=True), ssl_context=context)
            )
    except SimulatorBindError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    # the tour speaks through the OpenAI SDK; the gateway it starts serves simulated backends
    needed = ("openai",) if args.base_url else ("openai", "aiohttp")
    if problem := missing_demo_extra("demo", *needed):
        print(problem, file=sys.stderr)
        return 2
    from gateway.cli.bundled import EXAMPLE_POLICIES, bundled
    from gateway.dev.demo import run_demo

    policy_dir = args.policy_dir or bundled(EXAMPLE_POLICIES)
    if (problem := missing_policy_dir(policy_dir)) is not None:
        print(problem, file=sys.stderr)
        return 2
    return run_demo(args.base_url, policy_dir)
