"""The command line: `sovereign-gateway serve | demo | simulate | keys ... | policy ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.cli_audit import add_audit_commands
from gateway.cli_keys import add_keys_commands
from gateway.cli_policy import add_policy_commands
from gateway.policy.load import load_policy_dir
from gateway.settings import Settings, load_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovereign-gateway", description=__doc__)
    sub = parser.add_subparsers(title="commands")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, help="YAML settings file")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--policy-dir", type=Path)
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--with-simulators",
        action="store_true",
        help="also start simulated vLLM backends for the catalog's loopback URLs",
    )
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="a scripted tour through the official OpenAI SDK")
    demo.add_argument("--base-url", help="use a running gateway instead of starting one")
    demo.add_argument("--policy-dir", type=Path, default=Path("policies"))
    demo.set_defaults(func=_demo)

    simulate = sub.add_parser("simulate", help="run simulated vLLM backends (tests and demos)")
    simulate.add_argument("--policy-dir", type=Path, default=Path("policies"))
    simulate.set_defaults(func=_simulate)

    add_keys_commands(sub)
    add_policy_commands(sub)
    add_audit_commands(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.asgi.connections import guarded_protocol, reserve_descriptors
    from gateway.keys_error import startup_error
    from gateway.observability.logs import configure_logging

    settings = load_settings(
        args.config,
        host=args.host,
        port=args.port,
        policy_dir=args.policy_dir,
        log_level=args.log_level,
    )
    configure_logging(settings.log_level, settings.log_format)
    _warn_open_metrics(settings)
    try:
        app = create_app(settings)
    except Exception as exc:  # reported, then the process exits non-zero
        message = startup_error(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    simulators: subprocess.Popen[bytes] | None = None
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit so that the
    # `finally` below still stops the simulated backends instead of leaving them orphaned
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if args.with_simulators:
        simulators = _start_simulators(settings.policy_dir)
    try:
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=None,  # configure_logging below: our JSON lines for uvicorn's logs too
            access_log=False,
            loop="uvloop",
            http=guarded_protocol(
                settings.header_timeout_s, reserve_descriptors(settings.max_connections)
            ),
            server_header=False,
            proxy_headers=False,  # nothing reads the client's address; one ASGI layer less
        )
        uvicorn.Server(config).run()
    finally:
        if simulators is not None:
            simulators.terminate()
            simulators.wait(timeout=10)
    return 0


def _warn_open_metrics(settings: Settings) -> None:
    """`/metrics` labels tenants; say so when anyone on the network can read it."""
    if settings.metrics_token is not None:
        return
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if not loopback:
        logging.getLogger("gateway.cli").warning(
            "%s is open to anyone who can reach %s (it names tenants and models): set "
            "metrics_token (SGW_METRICS_TOKEN) or serve on a loopback address",
            settings.metrics_path,
            settings.host,
        )


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _start_simulators(policy_dir: Path) -> subprocess.Popen[bytes]:
    from gateway.simulator.catalog import simulated_backends

    specs = simulated_backends(load_policy_dir(policy_dir).catalog)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "--policy-dir", str(policy_dir)]
    )
    deadline = time.monotonic() + 20
    for _, port, _ in specs:
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                process.terminate()
                raise SystemExit(f"simulated backend on port {port} did not start")
            time.sleep(0.05)
    return process


def _simulate(args: argparse.Namespace) -> int:
    from gateway.simulator.catalog import simulated_backends
    from gateway.simulator.server import run_backends

    specs = simulated_backends(load_policy_dir(args.policy_dir).catalog)
    for name, port, models in specs:
        print(f"simulated {name} on 127.0.0.1:{port} serving {', '.join(models)}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_backends(specs))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(args.base_url, args.policy_dir)
