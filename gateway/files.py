"""Files the gateway creates hold audit records, prompts and keys, so only their owner may read
them (0600), and directories it creates are its owner's alone (0700). Directories that already
exist are left as they are: they may be the administrator's."""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents, each with mode 0700."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made by someone else meanwhile: not ours to change
        path.chmod(DIR_MODE)  # the umask may have taken bits from mkdir's mode


def touch_private(path: Path) -> None:
    """Create `path` empty with mode 0600, or make an existing file 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def restrict(*paths: Path) -> None:
    """Make those of `paths` that exist 0600."""
    for path in paths:
        try:
            path.chmod(FILE_MODE)
        except FileNotFoundError:
            continue


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (replacing what it held), readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, FILE_MODE)  # an existing file would keep its mode
        out.write(data)
