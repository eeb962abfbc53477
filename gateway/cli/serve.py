"""`sovereign-gateway serve`: the gateway in this process, or in several worker processes."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from gateway.cli.init import missing_policy_dir
from gateway.dev.extra import missing_demo_extra
from gateway.settings import Settings, load_settings


def add_serve_command(sub: Any) -> None:
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


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.cli.listener import serve
    from gateway.cli.startup_error import startup_error
    from gateway.dev.simulator.launch import Simulators, SimulatorsFailed, start_simulators
    from gateway.observability.logs import configure_logging

    if args.with_simulators and (
        problem := missing_demo_extra("serve --with-simulators", "aiohttp")
    ):
        print(problem, file=sys.stderr)
        return 2
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
            from gateway.cli.workers import supervise

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
