"""`sovereign-gateway keys new`: the printed entry, pasted under `keys:`, is the key it printed."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from gateway.auth.keys import KeyStore, hash_key
from gateway.auth.schema import Role
from gateway.cli.keys_file import keys_file_entry
from tests.harness import EXAMPLE_POLICIES, sovereign_gateway


def paste(keys_file: Path, printed: str) -> None:
    """What an admin does with the output: append the entry under `keys:`."""
    entry = printed.split("Add this entry under `keys:` in the keys file:\n", 1)[1]
    keys_file.write_text(keys_file.read_text() + entry)


@pytest.mark.parametrize(
    "label",
    ["billing: eu", "#1 team", "yes", "- ops", 'say "hi" {x}, [y]', "Zürich & Genève", "a\nb"],
)
def test_the_printed_entry_parses_and_is_the_printed_key(tmp_path: Path, label: str) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, policies)
    done = sovereign_gateway("keys", "new", "--tenant", "eu-bank", "--label", label, timeout=60)
    assert done.returncode == 0, done.stderr
    key = done.stdout.split("store it now): ", 1)[1].split("\n", 1)[0]
    paste(policies / "keys.yaml", done.stdout)
    checked = sovereign_gateway("policy", "check", policies, "--at", "2026-11-23", timeout=60)
    assert checked.returncode == 0, checked.stderr
    store = KeyStore.from_file(policies / "keys.yaml")
    principal = store.authenticate(f"Bearer {key}")
    assert (principal.tenant, principal.role) == ("eu-bank", Role.TENANT)
    entry = yaml.safe_load((policies / "keys.yaml").read_text())["keys"][-1]
    assert entry["label"] == label and entry["sha256"] == hash_key(key)


def test_an_admin_key_and_an_id_that_yaml_would_read_as_a_number(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n")
    key = "sk-sgw-123456789012-secret"
    keys_file.write_text(
        keys_file.read_text() + keys_file_entry("123456789012", key, "admin", None, "")
    )
    principal = KeyStore.from_file(keys_file).authenticate(f"Bearer {key}", Role.ADMIN)
    assert (principal.key_id, principal.role) == ("123456789012", Role.ADMIN)


def test_the_entry_says_when_the_key_was_made_and_when_it_expires(tmp_path: Path) -> None:
    done = sovereign_gateway(
        "keys", "new", "--role", "admin", "--expires", "2027-01-01", timeout=60
    )
    assert done.returncode == 0, done.stderr
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n")
    paste(keys_file, done.stdout)
    entry = KeyStore.from_file(keys_file)  # validates
    data = yaml.safe_load(keys_file.read_text())["keys"][0]
    assert data["expires"] == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(minutes=1) <= data["created"] <= now
    key = done.stdout.split("store it now): ", 1)[1].split("\n", 1)[0]
    assert entry.authenticate(f"Bearer {key}", Role.ADMIN).role is Role.ADMIN
    wrong = sovereign_gateway("keys", "new", "--role", "admin", "--expires", "soon", timeout=60)
    assert wrong.returncode == 2 and "not a duration, a date or a time" in wrong.stderr
