"""`sovereign-gateway audit keygen | public-key | export | verify | query | prune | report`.

Exit codes: 0 success (for `verify`: every check passed), 1 a failure (for `verify`: the export
does not verify), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.files import write_private
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    from gateway.audit.signing import Signer


def add_audit_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(title="audit commands")

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--store", help="sqlite:PATH or postgresql://...; default from settings")

    keygen = audit.add_parser("keygen", help="create an Ed25519 signing key (PEM, mode 0600)")
    keygen.add_argument("--out", type=Path, required=True)
    keygen.set_defaults(func=_keygen)

    public = audit.add_parser("public-key", help="print the public key auditors verify with")
    public.add_argument("--config", type=Path)
    public.add_argument("--signing-key", type=Path, help="default from settings")
    public.set_defaults(func=_public_key)

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
    export.set_defaults(func=_export)

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
    verify.set_defaults(func=_verify)

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
    query.set_defaults(func=_query)

    prune = audit.add_parser("prune", help="delete whole epochs before a date, keep checkpoints")
    store_args(prune)
    prune.add_argument("--before", required=True, type=_moment, help="RFC 3339 date or time")
    prune.set_defaults(func=_prune)

    report = audit.add_parser("report", help="where requests ran, refusals, verification")
    store_args(report)
    report.add_argument("--since", type=_moment)
    report.add_argument("--until", type=_moment)
    report.add_argument("--html", type=Path, help="also write a standalone HTML page")
    report.add_argument("--public-key", type=Path, help="verify each log with this key")
    report.set_defaults(func=_report)


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def _store_url(args: argparse.Namespace) -> str:
    url: str = args.store or _settings(args).audit_store
    return url


def _with_store(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from gateway.audit.setup import open_store
    from gateway.audit.store import StoreUnavailable

    async def run() -> int:
        store = open_store(_store_url(args))
        try:
            await store.open()
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _keygen(args: argparse.Namespace) -> int:
    import os

    from gateway.audit.signing import generate_private_key_pem

    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {args.out} exists; not overwriting a signing key", file=sys.stderr)
        return 1
    with os.fdopen(fd, "wb") as out:
        out.write(generate_private_key_pem())
    print(f"wrote {args.out}")
    return 0


def _public_key(args: argparse.Namespace) -> int:
    from gateway.audit.setup import signer_from_settings
    from gateway.audit.signing import Signer, public_key_pem

    if args.signing_key:
        signer = Signer.from_file(args.signing_key)
    else:
        signer = signer_from_settings(_settings(args))
    sys.stdout.write(public_key_pem(signer.public_key).decode())
    return 0


def _export_signer(args: argparse.Namespace) -> Signer | None:
    """The checkpoint key if this machine has it (never a new one: auditors would not know it)."""
    from gateway.audit.signing import Signer, load_private_key

    if args.signing_key:
        return Signer.from_file(args.signing_key)
    settings = _settings(args)
    if settings.audit_signing_key is not None:
        return Signer(load_private_key(settings.audit_signing_key.get_secret_value().encode()))
    path = settings.audit_signing_key_file
    return Signer.from_file(path) if path.exists() else None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    import time

    from gateway.audit.export import ExportError, export_store
    from gateway.audit.record import rfc3339

    try:
        signer = _export_signer(args)
    except (OSError, ValueError) as exc:
        print(f"error: the signing key: {exc}", file=sys.stderr)
        return 1
    if signer is None and not args.tenant:
        print(
            "note: no signing key here, so no fresh checkpoint: each log is exported up to the"
            " latest checkpoint the gateway signed",
            file=sys.stderr,
        )
    now = rfc3339(time.time())

    async def work(store: Any) -> int:
        logs = [args.log_id] if args.log_id else await store.log_ids()
        try:
            out = await export_store(store, logs, signer, now, args.tenant, _warn)
        except ExportError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if args.out:
            write_private(args.out, b"".join(out))
        else:
            sys.stdout.buffer.writelines(out)
        return 0

    return _with_store(args, work)


def _verify(args: argparse.Namespace) -> int:
    from gateway.audit.signing import Checkpoint, load_public_key
    from gateway.audit.verify import verify_export
    from gateway.audit.verify_statement import check_statements

    try:
        key = load_public_key(args.public_key.read_bytes())
        held = [Checkpoint.from_json(orjson.loads(p.read_bytes())) for p in args.checkpoint]
        lines = args.export.read_bytes().splitlines()
        whole = args.whole_log.read_bytes().splitlines() if args.whole_log else None
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = verify_export(lines, key, held)
    if whole is not None:
        against = check_statements(lines, whole, key)
        report.failures += [replace(f, message=f"whole log: {f.message}") for f in against.failures]
        report.notes += against.notes
    for failure in report.failures:
        print(f"FAIL {failure}")
    for note in report.notes:
        print(f"note: {note}")
    verdict = "verified" if report.ok else "NOT verified"
    if report.ok and report.notes:
        verdict += " (see notes)"
    print(
        f"{verdict}: {report.records} records, {report.checkpoints} checkpoints,"
        f" {len(report.logs)} log(s), {len(report.failures)} failure(s)"
    )
    return 0 if report.ok else 1


def _moment(text: str) -> str:
    """A date or RFC 3339 time as the stored form (UTC, 'Z')."""
    from gateway.audit.query import stored_time

    try:
        return stored_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 date or time: {text!r}") from None


COLUMNS = ["time", "tenant", "requested_model", "decision", "status", "deployment", "country"]


def _row(record: dict[str, Any]) -> list[str]:
    dep = record.get("deployment") or {}
    return [
        str(record.get("time")),
        str(record.get("tenant")),
        str(record.get("requested_model")),
        str(record.get("decision")),
        str(record.get("status")),
        str(dep.get("id", "-")),
        str(dep.get("inference_country", "-")),
    ]


def _query(args: argparse.Namespace) -> int:
    from gateway.audit.query import RecordFilter
    from gateway.audit.store import Query

    async def work(store: Any) -> int:
        query = Query(tenant=args.tenant, since=args.since, until=args.until)
        found = [orjson.loads(r.body) for r in await store.read(query)]
        wanted = RecordFilter.from_mapping(vars(args))
        found = [r for r in found if wanted.matches(r)][: args.limit]
        if args.format == "json":
            for record in found:
                sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
        elif args.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(COLUMNS)
            writer.writerows(_row(r) for r in found)
            sys.stdout.write(buffer.getvalue())
        else:
            rows = [COLUMNS, *(_row(r) for r in found)]
            widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
            for row in rows:
                print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            print(f"{len(found)} record(s)")
        return 0

    return _with_store(args, work)


def _prune(args: argparse.Namespace) -> int:
    from gateway.audit.merkle import Frontier

    before: str = args.before

    async def work(store: Any) -> int:
        for log_id in await store.log_ids():
            base = await store.base(log_id)
            eligible = [
                cp
                for cp in await store.checkpoints(log_id)
                if cp.time < before and cp.size > base.size
            ]
            if not eligible:
                print(f"{log_id}: nothing to prune")
                continue
            target = max(eligible, key=lambda cp: cp.size)
            frontier: Frontier = base.copy()
            for leaf in (await store.leaves(log_id))[: target.size - base.size]:
                frontier.append(leaf)
            if frontier.root().hex() != target.root:
                print(f"error: {log_id}: stored records do not match checkpoint {target.size}")
                return 1
            deleted = await store.prune(log_id, target.size, frontier)
            print(f"{log_id}: removed {deleted} record(s) below {target.size}; checkpoints kept")
        return 0

    return _with_store(args, work)


def _report(args: argparse.Namespace) -> int:
    from gateway.audit.report import build_report, render_html, render_text
    from gateway.audit.signing import load_public_key

    key = load_public_key(args.public_key.read_bytes()) if args.public_key else None

    async def work(store: Any) -> int:
        report = await build_report(store, args.since, args.until, key)
        print(render_text(report))
        if args.html:
            write_private(args.html, render_html(report).encode())
            print(f"wrote {args.html}")
        return 0

    return _with_store(args, work)
