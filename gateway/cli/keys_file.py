"""The keys file the command works on, read and validated; and the entry of a new key."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from gateway.auth.keys import KeysFileError, format_time, hash_key, read_keys_file
from gateway.auth.keys_edit import Stamp, entry_text
from gateway.auth.schema import ApiKeyEntry
from gateway.settings import load_settings


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def keys_file_of(args: argparse.Namespace) -> Path:
    if args.keys_file is not None:
        return Path(args.keys_file)
    settings = load_settings(args.config, policy_dir=args.policy_dir)
    return settings.resolved_keys_file()


def read_entries(path: Path) -> list[ApiKeyEntry] | None:
    try:
        return read_keys_file(path)
    except KeysFileError as exc:
        print(f"{path}: the keys file does not validate:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


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
    return entry_text(
        new_entry(key_id, key, role, tenant, label, expires), flow=flow, indent=indent
    )


def new_entry(
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
    entry["created"] = Stamp(format_time(now()))
    if expires is not None:
        entry["expires"] = Stamp(format_time(expires))
    entry["sha256"] = hash_key(key)
    return entry
