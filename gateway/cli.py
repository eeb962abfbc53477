"""The command line: `sovereign-gateway init | serve | demo | simulate | keys ... | policy ... |
audit ... | deploy ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.cli_audit import add_audit_commands
from gateway.cli_deploy import add_deploy_commands
from gateway.cli_init import add_init_command, missing_policy_dir
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
        help="also start simulated vLLM backends for the catalog's loopback URLs, on free ports",
    )
    serve.add_argument(
        "--simulator-base-port",
        type=int,
        help="with --with-simulators: listen on this port and the next ones instead of free ones",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run this many gateway processes on the port (each its own audit log, <id>-w<i>)",
    )
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)

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

    add_keys_commands(sub)
    add_init_command(sub)
    add_policy_commands(sub)
    add_audit_commands(sub)
    add_deploy_commands(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.keys_error import startup_error
    from gateway.listener import serve
    from gateway.observability.logs import configure_logging
    from gateway.simulator.launch import Simulators, SimulatorsFailed, start_simulators

    settings = load_settings(
        args.config,
        host=args.host,
        port=args.port,
        policy_dir=args.policy_dir,
        log_level=args.log_level,
    )
    if (problem := missing_policy_dir(settings.policy_dir)) is not None:
        print(problem, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    _warn_open_metrics(settings)
    simulators: Simulators | None = None
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn that into SystemExit so that the
    # `finally` below still stops the simulated backends instead of leaving them orphaned
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if args.with_simulators:
            try:
                simulators = start_simulators(settings.policy_dir, args.simulator_base_port)
            except SimulatorsFailed as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            settings = settings.model_copy(update={"policy_dir": simulators.policy_dir})
        if args.workers > 1 and args.worker_index is None:
            from gateway.workers import supervise

            return supervise(settings, args.workers, _child_args(args, settings))
        sock = None
        if args.worker_index is not None:
            from gateway.audit.setup import audit_log_id

            log_id = f"{audit_log_id(settings)}-w{args.worker_index}"
            settings = settings.model_copy(update={"audit_log_id": log_id})
            sock = socket.socket(fileno=args.listen_fd)
        try:
            app = create_app(settings)
        except Exception as exc:  # reported, then the process exits non-zero
            message = startup_error(exc)
            if message is None:
                raise
            print(message, file=sys.stderr)
            return 2
        if not serve(app, settings, sock):
            return 2  # the reason is logged: the audit log is taken, the store is down, ...
    finally:
        if simulators is not None:
            simulators.stop()
    return 0


def _child_args(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The `serve` arguments of each worker: the parent's, with the policy it resolved."""
    out = ["--policy-dir", str(settings.policy_dir), "--port", str(settings.port)]
    out += ["--host", settings.host, "--log-level", settings.log_level]
    if args.config is not None:
        out += ["--config", str(args.config)]
    return out


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


def _simulate(args: argparse.Namespace) -> int:
    from gateway.simulator.catalog import simulated_backends
    from gateway.simulator.launch import READY
    from gateway.simulator.server import SimulatorBindError, run_backends

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
    from gateway.bundled import EXAMPLE_POLICIES, bundled
    from gateway.demo import run_demo

    policy_dir = args.policy_dir or bundled(EXAMPLE_POLICIES)
    if (problem := missing_policy_dir(policy_dir)) is not None:
        print(problem, file=sys.stderr)
        return 2
    return run_demo(args.base_url, policy_dir)
