"""Files the gateway creates hold prompts, content keys and the signing key: only their owner
may read them, and the directories it creates are its owner's alone, whatever the umask."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx

from gateway.dev.demo import demo_key
from tests.harness import PolicyDir, run_gateway, run_simulators, sovereign_gateway


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root.parent)): oct(stat.S_IMODE(path.stat().st_mode))
        for path in [root, *root.rglob("*")]
    }


def test_the_store_its_wal_and_shm_and_the_signing_key_are_the_owners_alone(
    tmp_path: Path,
) -> None:
    policies = PolicyDir.from_examples(tmp_path / "policies")
    var = tmp_path / "var"
    with (
        umask(0o022),  # the usual default, under which files come out world-readable
        run_simulators(policies.path, tmp_path / "sim.log"),
        run_gateway(
            policies.path,
            tmp_path / "gw.log",
            audit_store=f"sqlite:{var / 'audit' / 'audit.sqlite3'}",
            audit_signing_key_file=var / "keys" / "signing.pem",
            log_level="warning",
        ) as gw,
    ):
        answer = httpx.post(  # research-lab keeps prompts in full: the WAL holds this one
            gw.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {demo_key('research-lab')}"},
            json={"model": "eurollm-9b", "messages": [{"role": "user", "content": "private"}]},
            timeout=30,
        )
        assert answer.status_code == 200
        found = modes(var)
        locks = {name: mode for name, mode in found.items() if name.endswith(".lock")}
        assert list(locks.values()) == ["0o600"]  # the lock that keeps the log to one writer
        assert {name: mode for name, mode in found.items() if name not in locks} == {
            "var": "0o700",
            "var/audit": "0o700",
            "var/audit/audit.sqlite3": "0o600",
            "var/audit/audit.sqlite3-wal": "0o600",
            "var/audit/audit.sqlite3-shm": "0o600",
            "var/keys": "0o700",
            "var/keys/signing.pem": "0o600",
        }

        store = f"sqlite:{var / 'audit' / 'audit.sqlite3'}"
        exported = tmp_path / "export.jsonl"
        exported.write_text("an older export\n")
        exported.chmod(0o644)
        html = tmp_path / "report.html"
        for command in (
            (
                "export",
                "--store",
                store,
                "--signing-key",
                var / "keys" / "signing.pem",
                "--out",
                exported,
            ),
            ("report", "--store", store, "--html", html),
        ):
            done = sovereign_gateway("audit", *command)
            assert done.returncode == 0, done.stderr
        assert oct(stat.S_IMODE(exported.stat().st_mode)) == "0o600"
        assert b'"type":"record"' in exported.read_bytes()
        assert oct(stat.S_IMODE(html.stat().st_mode)) == "0o600"


def test_a_store_made_world_readable_before_is_closed_to_others_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    with umask(0o022):
        legacy = sqlite3.connect(path)  # kept open, so its -wal and -shm files stay
        legacy.execute("PRAGMA journal_mode=WAL")
        legacy.execute("CREATE TABLE t (x)")
        legacy.execute("INSERT INTO t VALUES (1)")
        legacy.commit()
    try:
        assert oct(stat.S_IMODE((tmp_path / "audit.sqlite3-wal").stat().st_mode)) == "0o644"
        done = sovereign_gateway("audit", "query", "--store", f"sqlite:{path}")
        assert done.returncode == 0, done.stderr
        assert {
            name: oct(stat.S_IMODE((tmp_path / name).stat().st_mode))
            for name in ("audit.sqlite3", "audit.sqlite3-wal", "audit.sqlite3-shm")
        } == dict.fromkeys(("audit.sqlite3", "audit.sqlite3-wal", "audit.sqlite3-shm"), "0o600")
    finally:
        legacy.close()
