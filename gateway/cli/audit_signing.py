"""The audit commands of the signed log: `keygen`, `public-key`, `export` (signs a checkpoint
first) and `verify` (offline, with the public key)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from gateway.cli.audit_store import settings_of, with_store
from gateway.files import write_private

if TYPE_CHECKING:
    from gateway.audit.signing import Signer


def run_keygen(args: argparse.Namespace) -> int:
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


def run_public_key(args: argparse.Namespace) -> int:
    from gateway.audit.setup import signer_from_settings
    from gateway.audit.signing import Signer, public_key_pem

    if args.signing_key:
        signer = Signer.from_file(args.signing_key)
    else:
        signer = signer_from_settings(settings_of(args))
    sys.stdout.write(public_key_pem(signer.public_key).decode())
    return 0


def _export_signer(args: argparse.Namespace) -> Signer | None:
    """The checkpoint key if this machine has it (never a new one: auditors would not know it)."""
    from gateway.audit.signing import Signer, load_private_key

    if args.signing_key:
        return Signer.from_file(args.signing_key)
    settings = settings_of(args)
    if settings.audit_signing_key is not None:
        return Signer(load_private_key(settings.audit_signing_key.get_secret_value().encode()))
    path = settings.audit_signing_key_file
    return Signer.from_file(path) if path.exists() else None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_export(args: argparse.Namespace) -> int:
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

    return with_store(args, work)


def run_verify(args: argparse.Namespace) -> int:
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
