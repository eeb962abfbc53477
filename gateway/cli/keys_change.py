"""`keys rotate` and `keys revoke`: the keys file edited in place, or the change printed."""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import sys
from pathlib import Path

from gateway.auth.keys import KeysFileError, format_time, new_key
from gateway.auth.keys_edit import KeysEditError, Stamp, insert_after, set_fields, write_atomically
from gateway.auth.schema import ApiKeyEntry
from gateway.cli.keys_file import keys_file_of, new_entry, now, read_entries


def _find(entries: list[ApiKeyEntry], key_id: str, path: Path) -> ApiKeyEntry | None:
    entry = next((e for e in entries if e.id == key_id), None)
    if entry is None:
        print(f"error: no key with id {key_id} in {path}", file=sys.stderr)
    return entry


def run_rotate(args: argparse.Namespace) -> int:
    path = keys_file_of(args)
    entries = read_entries(path)
    old = _find(entries, args.id, path) if entries is not None else None
    if old is None:
        return 1
    key_id, key = new_key()
    new = new_entry(key_id, key, old.role.value, old.tenant, old.label)
    text = path.read_text(encoding="utf-8")
    until: dt.datetime | None = None
    try:
        if not old.disabled:
            until = now() + args.grace
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


def run_revoke(args: argparse.Namespace) -> int:
    path = keys_file_of(args)
    entries = read_entries(path)
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
