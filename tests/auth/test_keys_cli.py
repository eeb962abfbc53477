"""`sovereign-gateway keys list | rotate | revoke` as an admin runs them on a keys file: the file
is edited in place (comments, order and layout kept, mode 0600), or the change printed with
--dry-run; a key past its `expires` is refused."""

from __future__ import annotations

import datetime as dt
import difflib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from gateway.auth.keys import KeyStore, read_keys_file
from gateway.auth.schema import Role
from gateway.errors import AuthenticationFailed, ExpiredApiKey
from tests.harness import EXAMPLE_POLICIES, sovereign_gateway

ACME = "sk-sgw-demoacme-demo-key-not-a-secret"
BLOCK_STYLE = """\
# rotated every quarter
keys:
  # the billing service
  - id: billing01   # owned by finance
    tenant: eu-bank
    sha256: {h1}
    label: |
      billing
      (two lines)
  - id: ops000001
    role: admin
    sha256: {h2}   # kept for audits
    disabled: false
# end of keys
"""


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLE_POLICIES, target)
    return target


def printed_key(stdout: str) -> str:
    return stdout.split("store it now): ", 1)[1].split("\n", 1)[0]


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return [line for line in diff if line[:1] in "+-"]


def test_list_shows_every_key_but_never_a_hash(policies: Path) -> None:
    keys = policies / "keys.yaml"
    keys.write_text(
        keys.read_text()
        .replace("label: demo, sha256: d8f6", "label: demo, expires: 2020-01-01, sha256: d8f6")
        .replace("label: demo, sha256: 4621", "label: demo, disabled: true, sha256: 4621")
        .replace(
            "label: demo, sha256: 19dd",
            "label: demo, created: 2026-11-01T08:00:00Z, expires: 2099-01-01, sha256: 19dd",
        )
    )
    done = sovereign_gateway("keys", "list", "--policy-dir", policies, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "TENANT/ROLE", "LABEL", "CREATED", "EXPIRES", "STATUS"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["demoacme"] == ["acme-dev", "demo", "-", "2020-01-01T00:00:00Z", "expired"]
    assert rows["demoadmin"] == ["role:admin", "demo", "-", "-", "disabled"]
    assert rows["demoeubank"] == [
        "eu-bank",
        "demo",
        "2026-11-01T08:00:00Z",
        "2099-01-01T00:00:00Z",
        "active",
    ]
    assert len(rows) == 6
    as_json = sovereign_gateway("keys", "list", "--keys-file", keys, "--json", timeout=60)
    listed = {row["id"]: row for row in json.loads(as_json.stdout)}
    assert listed["demoadmin"]["disabled"] is True and listed["demoadmin"]["role"] == "admin"
    for output in (done.stdout, as_json.stdout):
        assert "sha256" not in output and "d8f6f4ca3a98" not in output


def test_rotate_adds_a_key_and_gives_the_old_one_a_grace_time(policies: Path) -> None:
    keys = policies / "keys.yaml"
    before = keys.read_text()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    done = sovereign_gateway(
        "keys", "rotate", "demoacme", "--grace", "2h", "--policy-dir", policies
    )
    assert done.returncode == 0, done.stderr
    new_key = printed_key(done.stdout)
    new_id = new_key.split("-")[2]
    assert f"key {new_id} replaces demoacme, which stays valid until" in done.stdout
    after = keys.read_text()
    assert keys.stat().st_mode & 0o777 == 0o600
    # only the old entry changed, and the new one sits right after it; comments are untouched
    changed = changed_lines(before, after)
    assert [line[:2] for line in changed] == ["- ", "+ ", "+ "]
    assert changed[1].startswith(changed[0].replace("- ", "+ ", 1)[:-1] + ", expires: 20")
    assert changed[2].startswith(f"+   - {{id: {new_id}, tenant: acme-dev, label: demo, created: ")
    assert after.splitlines()[:4] == before.splitlines()[:4]
    entries = {e["id"]: e for e in yaml.safe_load(after)["keys"]}
    expires = entries["demoacme"]["expires"]
    assert start + dt.timedelta(hours=2) <= expires <= start + dt.timedelta(hours=2, seconds=60)
    assert start <= entries[new_id]["created"] <= start + dt.timedelta(seconds=60)
    store = KeyStore.from_file(keys)
    assert store.authenticate(f"Bearer {new_key}").tenant == "acme-dev"
    assert store.authenticate(f"Bearer {ACME}").tenant == "acme-dev"
    later = KeyStore.from_file(keys, clock=expires.timestamp)
    with pytest.raises(ExpiredApiKey) as refused:
        later.authenticate(f"Bearer {ACME}")
    assert (refused.value.status, refused.value.code) == (401, "expired_api_key")
    assert later.authenticate(f"Bearer {new_key}").key_id == new_id
    checked = sovereign_gateway("policy", "check", policies, "--at", "2026-11-23")
    assert checked.returncode == 0, checked.stderr


def test_a_rotation_never_lengthens_the_old_keys_life(policies: Path) -> None:
    keys = policies / "keys.yaml"
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=5)
    stamp = soon.isoformat().replace("+00:00", "Z")
    keys.write_text(keys.read_text().replace("sha256: d8f6", f"expires: {stamp}, sha256: d8f6"))
    done = sovereign_gateway("keys", "rotate", "demoacme", "--grace", "7d", "--keys-file", keys)
    assert done.returncode == 0, done.stderr
    assert f"stays valid until {stamp}" in done.stdout
    entries = {e["id"]: e for e in yaml.safe_load(keys.read_text())["keys"]}
    assert entries["demoacme"]["expires"] == soon


def test_dry_run_prints_the_change_and_writes_nothing(policies: Path) -> None:
    keys = policies / "keys.yaml"
    before = keys.read_text()
    done = sovereign_gateway("keys", "rotate", "demoacme", "--dry-run", "--policy-dir", policies)
    assert done.returncode == 0, done.stderr
    assert keys.read_text() == before
    new_id = printed_key(done.stdout).split("-")[2]
    assert "stays valid until" in done.stdout and "not written (--dry-run)" in done.stdout
    assert f"\n+  - {{id: {new_id}, tenant: acme-dev" in done.stdout
    assert "\n-  - {id: demoacme, tenant: acme-dev" in done.stdout
    revoke = sovereign_gateway("keys", "revoke", "demoadmin", "--print", "--keys-file", keys)
    assert revoke.returncode == 0 and keys.read_text() == before
    assert "disabled: true}" in revoke.stdout


def test_revoke_disables_the_key_in_a_block_style_file_keeping_its_comments(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(BLOCK_STYLE.format(h1="a" * 64, h2="b" * 64))
    before = keys.read_text()
    done = sovereign_gateway("keys", "revoke", "ops000001", "--keys-file", keys)
    assert done.returncode == 0, done.stderr
    assert "key ops000001 revoked (disabled: true)" in done.stdout
    assert changed_lines(before, keys.read_text()) == [
        "-     disabled: false",
        "+     disabled: true",
    ]
    rotated = sovereign_gateway("keys", "rotate", "billing01", "--keys-file", keys)
    assert rotated.returncode == 0, rotated.stderr
    new_key = printed_key(rotated.stdout)
    lines = keys.read_text().splitlines()
    assert lines[:9] == before.splitlines()[:9]  # comments and the multi-line label kept
    assert lines[9].startswith("    expires: ")
    assert lines[10] == f"  - id: {new_key.split('-')[2]}"
    assert lines[-1] == "# end of keys"
    store = KeyStore.from_file(keys)
    assert store.authenticate(f"Bearer {new_key}").tenant == "eu-bank"
    entries = {e.id: e for e in read_keys_file(keys)}
    assert entries["ops000001"].disabled and entries["billing01"].label == "billing\n(two lines)\n"


def test_a_revoked_key_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    shutil.copy(EXAMPLE_POLICIES / "keys.yaml", keys)
    assert KeyStore.from_file(keys).authenticate(f"Bearer {ACME}").tenant == "acme-dev"
    assert sovereign_gateway("keys", "revoke", "demoacme", "--keys-file", keys).returncode == 0
    with pytest.raises(AuthenticationFailed) as refused:
        KeyStore.from_file(keys).authenticate(f"Bearer {ACME}")
    assert refused.value.code == "invalid_api_key"
    again = sovereign_gateway("keys", "revoke", "demoacme", "--keys-file", keys)
    assert again.returncode == 0 and "already revoked" in again.stdout


@pytest.mark.parametrize(
    ("text", "command", "message"),
    [
        (
            "keys:\n  - {id: demoacme, tenant: acme-dev, sha256: HASH}\n",
            "nokey000",
            "no key with id",
        ),
        ("keys: [{id: demoacme, tenant: acme-dev, sha256: HASH}]\n", "demoacme", "flow list"),
        (
            "keys:\n  - {id: demoacme, tenant: acme-dev, sha256: HASH}\n  - {id: demoacme}\n",
            "demoacme",
            "does not validate",
        ),
    ],
)
def test_a_file_it_cannot_edit_is_left_as_it_was(
    tmp_path: Path, text: str, command: str, message: str
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(text.replace("HASH", "ab" * 32))
    for verb in ("rotate", "revoke"):
        done = sovereign_gateway("keys", verb, command, "--keys-file", keys, timeout=60)
        assert done.returncode == 1, done.stdout
        assert message in done.stderr
        assert "store it now" not in done.stdout
        assert keys.read_text() == text.replace("HASH", "ab" * 32)
    assert [p.name for p in tmp_path.iterdir()] == ["keys.yaml"]


def test_expires_is_checked_at_request_time(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n  - {id: demoacme, tenant: acme-dev, expires: 2026-12-01T12:00:00+01:00,"
        " sha256: d8f6f4ca3a988855da9aabf88d0878cf37d0009ae1f6e7f22fcbaf4b009ea391}\n"
    )
    now = [dt.datetime(2026, 12, 1, 10, 59, 59, tzinfo=dt.UTC).timestamp()]
    store = KeyStore.from_file(keys, clock=lambda: now[0])
    assert store.authenticate(f"Bearer {ACME}", Role.TENANT).tenant == "acme-dev"
    now[0] += 1
    with pytest.raises(ExpiredApiKey) as refused:
        store.authenticate(f"Bearer {ACME}")
    assert refused.value.envelope() == {
        "error": {
            "message": "This API key expired at 2026-12-01T11:00:00Z: use the key that replaced"
            " it, or ask your administrator for a new one",
            "type": "invalid_request_error",
            "param": None,
            "code": "expired_api_key",
        }
    }
    # a wrong secret under the id of an expired key is just an incorrect key
    with pytest.raises(AuthenticationFailed) as wrong:
        store.authenticate("Bearer sk-sgw-demoacme-guess")
    assert wrong.value.code == "invalid_api_key"


def test_a_time_without_a_zone_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        f"keys:\n  - {{id: demoacme, tenant: acme-dev, expires: 2026-12-01 12:00:00,"
        f" sha256: {'ab' * 32}}}\n"
    )
    done = sovereign_gateway("keys", "list", "--keys-file", keys, timeout=60)
    assert done.returncode == 1
    assert "keys.yaml:2: error: keys.0.expires: Input should have timezone info" in done.stderr
