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
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from gateway.auth.keys import KeysFileError, format_time, hash_key, new_key, read_keys_file
from gateway.auth.keys_edit import (
    KeysEditError,
    Stamp,
    entry_text,
    insert_after,
    set_fields,
    write_atomically,
)
from gateway.auth.schema import ApiKeyEntry, Role, Timestamp
from gateway.settings import load_settings

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
    rotate.set_defaults(func=_rotate)

    revoke = keys.add_parser("revoke", help="refuse a key from the next reload on")
    revoke.add_argument("id", help="the key id (sk-sgw-<id>-...)")
    _file_options(revoke)
    _dry_run(revoke)
    revoke.set_defaults(func=_revoke)


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
        return _now() + _duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return TypeAdapter(Timestamp).validate_python(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a duration, a date or a time with its zone: {text!r}"
        ) from exc


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _keys_file(args: argparse.Namespace) -> Path:
    if args.keys_file is not None:
        return Path(args.keys_file)
    settings = load_settings(args.config, policy_dir=args.policy_dir)
    return settings.resolved_keys_file()


def _read(path: Path) -> list[ApiKeyEntry] | None:
    try:
        return read_keys_file(path)
    except KeysFileError as exc:
        print(f"{path}: the keys file does not validate:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _new(args: argparse.Namespace) -> int:
    if args.role == "tenant" and not args.tenant:
        print("error: a tenant key needs --tenant", file=sys.stderr)
        return 2
    key_id, key = new_key()
    print(f"API key (shown once, store it now): {key}")
    print("Add this entry under `keys:` in the keys file:")
    print(keys_file_entry(key_id, key, args.role, args.tenant, args.label, args.expires), end="")
    return 0


def keys_file_entry(
    key_id: str,
    key: str,
    role: str,
    tenant: str | None,
    label: str,
    expires: dt.datetime | None = None,
    *,
    flow: bool = True,
    indent: int = 2,
) -> str:
    """The keys file entry of a new key, as YAML, indented to sit under `keys:`."""
    return entry_text(_entry(key_id, key, role, tenant, label, expires), flow=flow, indent=indent)


def _entry(
    key_id: str,
    key: str,
    role: str,
    tenant: str | None,
    label: str,
    expires: dt.datetime | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": key_id}
    entry.update({"tenant": tenant or ""} if role == "tenant" else {"role": role})
    if label:
        entry["label"] = label
    entry["created"] = Stamp(format_time(_now()))
    if expires is not None:
        entry["expires"] = Stamp(format_time(expires))
    entry["sha256"] = hash_key(key)
    return entry


def _status(entry: ApiKeyEntry, now: dt.datetime) -> str:
    if entry.disabled:
        return "disabled"
    if entry.expires is not None and entry.expires <= now:
        return "expired"
    return "active"


def _list(args: argparse.Namespace) -> int:
    entries = _read(_keys_file(args))
    if entries is None:
        return 1
    now = _now()
    rows = [
        {
            "id": e.id,
            "tenant": e.tenant,
            "role": e.role.value,
            "label": e.label,
            "created": format_time(e.created) or None,
            "expires": format_time(e.expires) or None,
            "disabled": e.disabled,
            "status": _status(e, now),
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


def _find(entries: list[ApiKeyEntry], key_id: str, path: Path) -> ApiKeyEntry | None:
    entry = next((e for e in entries if e.id == key_id), None)
    if entry is None:
        print(f"error: no key with id {key_id} in {path}", file=sys.stderr)
    return entry


def _rotate(args: argparse.Namespace) -> int:
    path = _keys_file(args)
    entries = _read(path)
    old = _find(entries, args.id, path) if entries is not None else None
    if old is None:
        return 1
    key_id, key = new_key()
    new = _entry(key_id, key, old.role.value, old.tenant, old.label)
    text = path.read_text(encoding="utf-8")
    until: dt.datetime | None = None
    try:
        if not old.disabled:
            until = _now() + args.grace
            if old.expires is not None and old.expires < until:
                until = old.expires  # a rotation never lengthens the old key's life
            text = set_fields(text, old.id, {"expires": Stamp(format_time(until))})
        text = insert_after(text, old.id, new)
    except KeysEditError as exc:
        return _cannot_edit(path, exc)
    old_fate = "is disabled" if until is None else f"stays valid until {format_time(until)}"
    return _apply(
        path,
        text,
        args.dry_run,
        f"API key (shown once, store it now): {key}",
        f"key {key_id} replaces {old.id}, which {old_fate}",
    )


def _revoke(args: argparse.Namespace) -> int:
    path = _keys_file(args)
    entries = _read(path)
    entry = _find(entries, args.id, path) if entries is not None else None
    if entry is None:
        return 1
    if entry.disabled:
        print(f"key {entry.id} is already revoked (disabled: true); nothing to change")
        return 0
    text = path.read_text(encoding="utf-8")
    try:
        text = set_fields(text, entry.id, {"disabled": True})
    except KeysEditError as exc:
        return _cannot_edit(path, exc)
    return _apply(path, text, args.dry_run, f"key {entry.id} revoked (disabled: true)")


def _apply(path: Path, text: str, dry_run: bool, *done: str) -> int:
    """Write `text` over the keys file, then say what was done (`done`); or, with `dry_run`,
    print what would be done and the change, and write nothing."""
    before = path.read_text(encoding="utf-8")
    if dry_run:
        print(*done, sep="\n")
        print(f"not written (--dry-run); the change to {path}:")
        diff = difflib.unified_diff(
            before.splitlines(keepends=True), text.splitlines(keepends=True), str(path), str(path)
        )
        sys.stdout.writelines(diff)
        return 0
    try:
        write_atomically(path, text)
    except (OSError, KeysFileError) as exc:
        print(f"error: {path} left as it was: {exc}", file=sys.stderr)
        return 1
    print(*done, sep="\n")
    print(
        f"wrote {path}; the gateway takes it with its next reload"
        " (file watcher, SIGHUP or POST /admin/policy/reload)"
    )
    return 0


def _cannot_edit(path: Path, exc: KeysEditError) -> int:
    print(f"error: cannot edit {path} in place: {exc}; nothing was written", file=sys.stderr)
    return 1
