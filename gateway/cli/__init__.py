"""The command line: `sovereign-gateway init | serve | demo | simulate | keys ... | policy ... |
audit ... | deploy ...`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gateway.cli.audit import add_audit_commands
from gateway.cli.deploy import add_deploy_commands
from gateway.cli.dev import add_dev_commands
from gateway.cli.init import add_init_command
from gateway.cli.keys import add_keys_commands
from gateway.cli.policy import add_policy_commands
from gateway.cli.serve import add_serve_command


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

    add_serve_command(sub)
    add_dev_commands(sub)
    add_keys_commands(sub)
    add_init_command(sub)
    add_policy_commands(sub)
    add_audit_commands(sub)
    add_deploy_commands(sub)
    return parser
