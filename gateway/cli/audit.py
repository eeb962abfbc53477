"""`sovereign-gateway audit keygen | public-key | export | verify | query | prune | report`.

Exit codes: 0 success (for `verify`: every check passed), 1 a failure (for `verify`: the export
does not verify), 2 bad arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli.audit_signing import run_export, run_keygen, run_public_key, run_verify
from gateway.cli.audit_store import run_prune, run_query, run_report


def add_audit_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(title="audit commands")

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--store", help="sqlite:PATH or postgresql://...; default from settings")

    keygen = audit.add_parser("keygen", help="create an Ed25519 signing key (PEM, mode 0600)")
    keygen.add_argument("--out", type=Path, required=True)
    keygen.set_defaults(func=run_keygen)

    public = audit.add_parser("public-key", help="print the public key auditors verify with")
    public.add_argument("--config", type=Path)
    public.add_argument("--signing-key", type=Path, help="default from settings")
    public.set_defaults(func=run_public_key)

    export = audit.add_parser(
        "export", help="sign a checkpoint, then write the log up to it as JSON Lines (mode 0600)"
    )
    store_args(export)
    export.add_argument("--out", type=Path, help="default: standard output")
    export.add_argument(
        "--tenant", help="only this tenant's records, with inclusion proofs and a signed count"
    )
    export.add_argument("--log-id", help="one log only (default: every log in the store)")
    export.add_argument("--signing-key", type=Path, help="default from settings")
    export.set_defaults(func=run_export)

    verify = audit.add_parser("verify", help="verify an export offline")
    verify.add_argument("export", type=Path)
    verify.add_argument("--public-key", type=Path, required=True)
    verify.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint (JSON) you already hold; detects a truncated or rewritten log",
    )
    verify.add_argument(
        "--whole-log",
        type=Path,
        help="a whole-log export: also check that the tenant export's signed statement lists"
        " exactly the tenant's records in it",
    )
    verify.set_defaults(func=run_verify)

    query = audit.add_parser("query", help="find records")
    store_args(query)
    query.add_argument("--tenant")
    query.add_argument("--since", type=_moment, help="RFC 3339 date or time, inclusive")
    query.add_argument("--until", type=_moment, help="RFC 3339 date or time, exclusive")
    query.add_argument("--decision", choices=["allowed", "refused", "error"])
    query.add_argument("--model", help="requested model or alias")
    query.add_argument("--country", help="inference country of the deployment used")
    query.add_argument("--jurisdiction", help="any link of the operator's control chain")
    query.add_argument("--backend")
    query.add_argument("--rule", help="a rule that refused some candidate")
    query.add_argument("--format", choices=["table", "json", "csv"], default="table")
    query.add_argument("--limit", type=_positive)
    query.set_defaults(func=run_query)

    prune = audit.add_parser("prune", help="delete whole epochs before a date, keep checkpoints")
    store_args(prune)
    prune.add_argument("--before", required=True, type=_moment, help="RFC 3339 date or time")
    prune.set_defaults(func=run_prune)

    _add_report_command(audit, store_args)


def _add_report_command(audit: Any, store_args: Any) -> None:
    report = audit.add_parser("report", help="where requests ran, refusals, verification")
    store_args(report)
    report.add_argument("--since", type=_moment, help="RFC 3339 date or time, inclusive")
    report.add_argument("--until", type=_moment, help="RFC 3339 date or time, exclusive")
    report.add_argument("--tenant", help="only this tenant's requests")
    report.add_argument(
        "--log-id",
        action="append",
        default=[],
        help="a log to cover (repeat for more; default: every log in the store)",
    )
    report.add_argument("--html", type=Path, help="also write a standalone HTML page")
    report.add_argument("--public-key", type=Path, help="verify each log with this key")
    report.set_defaults(func=run_report)


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _moment(text: str) -> str:
    """A date or RFC 3339 time as the stored form (UTC, 'Z')."""
    from gateway.audit.query import stored_time

    try:
        found = stored_time(text)
    except ValueError:
        found = None
    if found is None:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 date or time: {text!r}")
    return found
