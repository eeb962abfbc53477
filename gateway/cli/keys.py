"""`sovereign-gateway keys new | list | rotate | revoke`: the life of an API key.

The keys file stays the source of truth. `new` prints the key once and the entry to add; `rotate`
and `revoke` edit the file in place (comments, order and layout kept; written atomically, mode
0600) or, with `--dry-run`, print the change as a diff and write nothing. The gateway takes the
edited file with its next reload (file watcher, SIGHUP or `POST /admin/policy/reload`).

Exit codes: 0 done, 1 the key or the file is not as the command needs (unknown id, a file that does
not validate or that cannot be edited in place), 2 a usage error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from gateway.auth.keys import format_time, new_key
from gateway.auth.schema import ApiKeyEntry, Role, Timestamp
from gateway.cli.keys_change import run_revoke, run_rotate
from gateway.cli.keys_file import keys_file_entry, keys_file_of, now, read_entries

DEFAULT_GRACE = "24h"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_keys_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys").add_subparsers(title="keys commands")

    new = keys.add_parser("new", help="create a key; prints the key once and its keys.yaml entry")
    new.add_argument("--tenant", help="required for the tenant role")
    new.add_argument("--role", choices=["tenant", "admin", "auditor"], default="tenant")
    new.add_argument("--label", default="")
    new.add_argument("--expires", type=_when, help="a duration (90d) or a date or time (UTC)")
    new.set_defaults(func=_new)

    listing = keys.add_parser("list", help="the keys of the keys file (never their hashes)")
    _file_options(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)

    rotate = keys.add_parser("rotate", help="a new key for the same tenant or role")
    rotate.add_argument("id", help="the key id (sk-sgw-<id>-...)")
    rotate.add_argument(
        "--grace",
        type=_duration,
        default=_duration(DEFAULT_GRACE),
        help=f"how long the old key stays valid, e.g. 30m, 24h, 7d, 0 (default {DEFAULT_GRACE})",
    )
    _file_options(rotate)
    _dry_run(rotate)
    rotate.set_defaults(func=run_rotate)

    revoke = keys.add_parser("revoke", help="refuse a key from the next reload on")
    revoke.add_argument("id", help="the key id (sk-sgw-<id>-...)")
    _file_options(revoke)
    _dry_run(revoke)
    revoke.set_defaults(func=run_revoke)


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML settings file (for keys_file)")
    parser.add_argument("--policy-dir", type=Path, help="the keys file is keys.yaml in it")
    parser.add_argument("--keys-file", type=Path, help="the keys file itself")


def _dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        "--print",
        action="store_true",
        dest="dry_run",
        help="print the change as a diff and leave the file as it is",
    )


def _duration(text: str) -> dt.timedelta:
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match or (not match[2] and match[1] != "0"):
        raise argparse.ArgumentTypeError(f"not a duration (30m, 24h, 7d, 0): {text!r}")
    return dt.timedelta(seconds=int(match[1]) * _UNITS.get(match[2], 1))


def _when(text: str) -> dt.datetime:
    """A duration from now, or a date (00:00 UTC) or a time with its zone."""
    try:
        return now() + _duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return TypeAdapter(Timestamp).validate_python(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a duration, a date or a time with its zone: {text!r}"
        ) from exc


def _new(args: argparse.Namespace) -> int:
    if args.role == "tenant" and not args.tenant:
        print("error: a tenant key needs --tenant", file=sys.stderr)
        return 2
    key_id, key = new_key()
    print(f"API key (shown once, store it now): {key}")
    print("Add this entry under `keys:` in the keys file:")
    print(keys_file_entry(key_id, key, args.role, args.tenant, args.label, args.expires), end="")
    return 0


def _status(entry: ApiKeyEntry, at: dt.datetime) -> str:
    if entry.disabled:
        return "disabled"
    if entry.expires is not None and entry.expires <= at:
        return "expired"
    return "active"


def _list(args: argparse.Namespace) -> int:
    entries = read_entries(keys_file_of(args))
    if entries is None:
        return 1
    at = now()
    rows = [
        {
            "id": e.id,
            "tenant": e.tenant,
            "role": e.role.value,
            "label": e.label,
            "created": format_time(e.created) or None,
            "expires": format_time(e.expires) or None,
            "disabled": e.disabled,
            "status": _status(e, at),
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    header = ("ID", "TENANT/ROLE", "LABEL", "CREATED", "EXPIRES", "STATUS")
    table = [header] + [
        (
            str(r["id"]),
            str(r["tenant"]) if r["role"] == Role.TENANT.value else f"role:{r['role']}",
            _printable(str(r["label"])),
            str(r["created"] or "-"),
            str(r["expires"] or "-"),
            str(r["status"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _printable(text: str) -> str:
    """A label on one table line: control characters shown escaped."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)
