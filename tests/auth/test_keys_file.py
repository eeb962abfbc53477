"""The keys file as an admin edits it: each key has one entry, and a file that says otherwise is
refused with file and line (by `policy check`, at start-up and by a reload)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.auth.schema import TENANT_PATTERN
from gateway.policy.schema import NAME_PATTERN
from tests.harness import EXAMPLE_POLICIES, sovereign_gateway

ACME_ENTRY = "  - {id: demoacme, tenant: acme-dev, label: demo, sha256: "


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, target)
    return target


def check(policies: Path) -> subprocess.CompletedProcess[str]:
    return sovereign_gateway("policy", "check", policies, "--at", "2026-11-23", timeout=60)


def line_of(path: Path, text: str, nth: int = 0) -> int:
    return [i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t][nth]


def test_a_second_entry_that_disables_a_key_is_an_error_not_a_no_op(policies: Path) -> None:
    keys = policies / "keys.yaml"
    entry = next(t for t in keys.read_text().splitlines() if t.startswith(ACME_ENTRY))
    # an admin "revokes" the demo key by adding a disabled copy of its entry
    keys.write_text(keys.read_text() + entry.replace("label: demo", "disabled: true") + "\n")
    done = check(policies)
    assert done.returncode == 1, done.stderr
    first, second = line_of(keys, "id: demoacme"), line_of(keys, "id: demoacme", 1)
    assert (
        f"{policies}/keys.yaml:{second}: error: keys.6.id: this key id demoacme is already listed"
        f" at line {first} (keys.3, key id demoacme); each key has one entry: to revoke a key,"
        " set `disabled: true` on that entry or remove it"
    ) in done.stderr
    assert done.stdout.startswith("invalid:")


def test_one_hash_under_two_ids_is_an_error(policies: Path) -> None:
    keys = policies / "keys.yaml"
    entry = next(t for t in keys.read_text().splitlines() if t.startswith(ACME_ENTRY))
    keys.write_text(keys.read_text() + entry.replace("id: demoacme", "id: demoacme2") + "\n")
    done = check(policies)
    assert done.returncode == 1
    last = len(keys.read_text().splitlines())
    assert (
        f"keys.yaml:{last}: error: keys.6.sha256: this hash is already listed at line"
        f" {line_of(keys, 'id: demoacme,')} (keys.3, key id demoacme)"
    ) in done.stderr


def test_the_gateway_does_not_start_on_duplicate_key_ids(policies: Path) -> None:
    keys = policies / "keys.yaml"
    keys.write_text(keys.read_text() + ACME_ENTRY.replace("label: demo", "disabled: true"))
    keys.write_text(keys.read_text() + "ab" * 32 + "}\n")
    done = sovereign_gateway("serve", "--policy-dir", policies, "--port", "1", timeout=60)
    assert done.returncode == 2
    assert "the keys file does not validate:" in done.stderr
    assert "keys.yaml:11: error: keys.6.id: this key id demoacme is already listed" in done.stderr


def test_a_key_names_its_tenant_as_the_policy_spells_tenant_names() -> None:
    # the keys file's schema keeps its own copy, so that auth does not import the policy
    assert TENANT_PATTERN == NAME_PATTERN
