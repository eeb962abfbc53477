"""A tenant export is provably whole: the tenant's auditor, with nothing but the export and the
public key, finds any of the tenant's records removed, wherever it was."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.canonical import canonical
from gateway.audit.merkle import leaf_hash
from gateway.audit.signing import Checkpoint, Signer
from gateway.audit.statement import sign_statement
from gateway.audit.verify import verify_export
from tests.audit.sample_log import (
    NOW,
    SIGNER,
    export,
    fill,
    is_record,
    key_files,
    kinds,
    verify,
)
from tests.harness import sovereign_gateway


def records_of(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if is_record(line)]


def without(lines: list[bytes], *indexes: int) -> list[bytes]:
    return [line for i, line in enumerate(lines) if i not in indexes]


def test_an_honest_tenant_export_verifies_and_says_it_is_whole(store_url: str) -> None:
    fill(store_url, 15)
    lines = export(store_url, tenant="alpha")
    report = verify(lines)
    assert report.ok, report.failures
    assert report.records == 8  # seq 0, 2, ..., 14
    statement = orjson.loads(lines[2])["statement"]
    assert statement["tenant"] == "alpha" and statement["count"] == 8
    assert statement["last_seq"] == 14 and statement["size"] == 15
    # a tenant with no record gets a statement that says so, and it verifies
    nobody = export(store_url, tenant="gamma")
    assert verify(nobody).ok and orjson.loads(nobody[2])["statement"]["count"] == 0


def test_every_way_of_removing_records_is_found(store_url: str) -> None:
    fill(store_url, 15)
    lines = export(store_url, tenant="alpha")
    rows = records_of(lines)

    for removed, name in ((rows[:1], "first"), (rows[3:4], "middle"), (rows[2:6], "several")):
        report = verify(without(lines, *removed))
        assert kinds(report) == ["incomplete"], name
        assert f"{len(removed)} record(s) missing: the signed statement lists 8 record(s)" in str(
            report.failures[0]
        )

    report = verify(without(lines, rows[-1]))
    assert kinds(report) == ["incomplete"]
    assert "its last one (seq 14) among them" in str(report.failures[0])

    report = verify(without(lines, *rows))
    assert kinds(report) == ["incomplete"]
    assert "8 record(s) missing" in str(report.failures[0])

    # the statement gone with the records: nothing shows the export whole
    statement = 2
    assert kinds(verify(without(lines, statement, rows[-1]))) == ["no_statement"]
    assert kinds(verify(without(lines, statement, *rows))) == ["no_statement"]


def test_records_and_statements_swapped_from_other_exports_are_found(store_url: str) -> None:
    fill(store_url, 15)
    early = export(store_url, tenant="alpha")
    fill(store_url, 4, first=15)
    later = export(store_url, tenant="alpha")  # 10 records of alpha below size 19
    assert verify(later).ok
    early_rows, later_rows = records_of(early), records_of(later)

    # a record of the later export put in place of one of the early export's
    swapped = list(early)
    swapped[early_rows[3]] = later[later_rows[-1]]  # seq 18, which the early tree lacks
    assert kinds(verify(swapped)) == ["unsigned", "incomplete"]

    # the same record from the early export, with its proof against the early checkpoint
    swapped = list(later)
    swapped[later_rows[2]] = early[early_rows[2]]
    assert kinds(verify(swapped)) == ["edited"]

    # the early statement with the later records (some of them dropped to fit): not its export
    mixed = [later[0], later[1], early[2], *[later[i] for i in later_rows[:8]]]
    report = verify(mixed)
    assert kinds(report) == ["mismatched"]
    assert "statement counts records below size 15, but the proofs refer to" in str(
        report.failures[0]
    )

    # a record of the same tenant from another log
    fill(store_url, 15, log_id="replica-b")
    other = export(store_url, log_id="replica-b", tenant="alpha")
    swapped = list(early)
    swapped[early_rows[3]] = other[records_of(other)[3]]
    assert kinds(verify(swapped)) == ["foreign", "incomplete"]

    # the right records in another order
    moved = list(early)
    moved[early_rows[1]], moved[early_rows[2]] = moved[early_rows[2]], moved[early_rows[1]]
    assert kinds(verify(moved)) == ["reordered"]

    # another key
    stranger = Signer(Ed25519PrivateKey.generate()).public_key
    assert set(kinds(verify_export(early, stranger))) == {"wrong_key"}

    # a statement edited to count fewer records is no longer signed
    edited = list(early)
    document = orjson.loads(edited[2])
    document["statement"]["count"] = 7
    edited[2] = orjson.dumps(document)
    assert kinds(verify(without(edited, early_rows[3]))) == ["bad_signature"]


def test_a_tenant_export_of_a_pruned_log_is_still_provably_whole(store_url: str) -> None:
    fill(store_url, 12)
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    done = sovereign_gateway("audit", "prune", "--store", store_url, "--before", tomorrow)
    assert done.returncode == 0, done.stderr
    fill(store_url, 5, first=12)
    lines = export(store_url, tenant="alpha")
    report = verify(lines)
    assert report.ok, report.failures
    assert report.records == 3  # seq 12, 14 and 16
    statement = orjson.loads(lines[2])["statement"]
    assert statement["since_seq"] == 12 and statement["count"] == 3
    rows = records_of(lines)
    assert kinds(verify(without(lines, rows[1]))) == ["incomplete"]
    assert kinds(verify(without(lines, rows[-1]))) == ["incomplete"]


def test_the_cli_makes_and_checks_tenant_exports(store_url: str, tmp_path: Path) -> None:
    fill(store_url, 9)
    signing, public = key_files(tmp_path)
    out = tmp_path / "alpha.jsonl"
    config = tmp_path / "settings.yaml"  # no signing key on this machine
    config.write_text(f"audit_signing_key_file: {tmp_path / 'absent.pem'}\n")
    done = sovereign_gateway(
        "audit", "export", "--store", store_url, "--tenant", "alpha", "--config", config
    )
    assert done.returncode == 1
    assert "a tenant export carries a statement signed when it is made" in done.stderr
    done = sovereign_gateway(
        "audit", "export", "--store", store_url, "--tenant", "alpha", "--signing-key", signing,
        "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    verified = sovereign_gateway("audit", "verify", out, "--public-key", public)
    assert verified.returncode == 0, verified.stdout
    assert "verified: 5 records" in verified.stdout
    lines = out.read_bytes().splitlines()
    out.write_bytes(b"\n".join(without(lines, records_of(lines)[-1])))
    cut = sovereign_gateway("audit", "verify", out, "--public-key", public)
    assert cut.returncode == 1
    assert "FAIL incomplete: 1 record(s) missing, its last one (seq 8) among them" in cut.stdout


def test_a_statement_that_does_not_list_the_records_exported_is_named(store_url: str) -> None:
    """As a statement signed over another view of the log would be (the key holder's word is
    what the export is checked against)."""
    fill(store_url, 9)
    lines = export(store_url, tenant="alpha")
    checkpoint = Checkpoint.from_json(orjson.loads(lines[1])["checkpoint"])
    entries = [
        (seq, leaf_hash(canonical(orjson.loads(lines[i])["record"])))
        for i in records_of(lines)
        for seq in [orjson.loads(lines[i])["record"]["seq"]]
    ]

    def with_statement(listed: list[tuple[int, bytes]]) -> list[bytes]:
        statement = sign_statement(SIGNER, checkpoint, "alpha", 0, listed, NOW)
        return [
            *lines[:2],
            orjson.dumps({"type": "statement", "statement": statement.as_json()}),
            *lines[3:],
        ]

    assert verify(with_statement(entries)).ok
    assert kinds(verify(with_statement(entries[:-1]))) == ["unlisted"]
    other = [*entries[:-1], (entries[-1][0], b"\0" * 32)]
    assert kinds(verify(with_statement(other))) == ["substituted"]
    # an export older than a checkpoint the auditor holds
    fill(store_url, 2, first=9)
    newer = Checkpoint.from_json(orjson.loads(export(store_url, tenant="alpha")[1])["checkpoint"])
    assert (checkpoint.size, newer.size) == (9, 11)
    report = verify_export(lines, SIGNER.public_key, [newer])
    assert kinds(report) == ["truncated"]
    assert "stops at the checkpoint of size 9, but you hold one of size 11" in str(
        report.failures[0]
    )


def test_a_statement_that_leaves_a_record_out_is_caught_against_the_whole_log(
    store_url: str, tmp_path: Path
) -> None:
    """The tenant's auditor alone must take the key holder's word; a whole-log export settles
    it."""
    fill(store_url, 9)
    honest = export(store_url, tenant="alpha")
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"\n".join(export(store_url)))
    _, public = key_files(tmp_path)
    tenant = tmp_path / "alpha.jsonl"
    tenant.write_bytes(b"\n".join(honest))
    done = sovereign_gateway(
        "audit", "verify", tenant, "--public-key", public, "--whole-log", whole
    )
    assert done.returncode == 0, done.stdout

    # the key holder leaves seq 4 out of both the records and the statement it signs
    rows = records_of(honest)
    kept = [honest[i] for i in rows if orjson.loads(honest[i])["record"]["seq"] != 4]
    checkpoint = Checkpoint.from_json(orjson.loads(honest[1])["checkpoint"])
    entries = [
        (record["seq"], leaf_hash(canonical(record)))
        for record in (orjson.loads(x)["record"] for x in kept)
    ]
    statement = sign_statement(SIGNER, checkpoint, "alpha", 0, entries, NOW)
    lying = [
        *honest[:2],
        orjson.dumps({"type": "statement", "statement": statement.as_json()}),
        *kept,
    ]
    tenant.write_bytes(b"\n".join(lying))
    alone = sovereign_gateway("audit", "verify", tenant, "--public-key", public)
    assert alone.returncode == 0  # the tenant's auditor alone cannot tell
    done = sovereign_gateway(
        "audit", "verify", tenant, "--public-key", public, "--whole-log", whole
    )
    assert done.returncode == 1
    assert (
        "FAIL false_statement: whole log: the signed statement lists 4 record(s) of tenant alpha"
        " in log replica-a below size 9; the log holds 5 (seq 0, 2, 4, 6, 8)"
    ) in done.stdout
