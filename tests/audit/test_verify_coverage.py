"""`verify` vouches only for records a signed checkpoint covers, and `audit export` signs one
first, so an honest export is always covered."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from gateway.audit.merkle import leaf_hash
from tests.audit.sample_log import (
    append_unsigned,
    export,
    fill,
    is_record,
    key_files,
    kinds,
    verify,
)
from tests.harness import sovereign_gateway


def cli(*args: str | Path) -> tuple[int, str, str]:
    done = sovereign_gateway("audit", *args)
    return done.returncode, done.stdout, done.stderr


def no_key_config(tmp_path: Path) -> Path:
    """Settings whose signing key file does not exist, as on an auditor's machine."""
    config = tmp_path / "settings.yaml"
    config.write_text(f"audit_signing_key_file: {tmp_path / 'absent.pem'}\n")
    return config


def test_records_rewritten_behind_the_empty_checkpoint_do_not_verify(
    store_url: str, tmp_path: Path
) -> None:
    fill(store_url, 12)
    lines = export(store_url)
    header, empty = lines[0], lines[1]
    assert orjson.loads(empty)["checkpoint"]["size"] == 0
    forged = [
        x.replace(b'"status":200', b'"status":204').replace(b'"req-', b'"forged-')
        for x in lines
        if is_record(x)
    ]
    report = verify([header, empty, *forged])
    assert kinds(report) == ["unsigned"]
    assert "records seq 0 to 11 are covered by no signed checkpoint" in str(report.failures[0])

    _, public = key_files(tmp_path)
    path = tmp_path / "forged.jsonl"
    path.write_bytes(b"\n".join([header, empty, *forged]) + b"\n")
    code, out, _ = cli("verify", path, "--public-key", public)
    assert code == 1
    assert "FAIL unsigned: log replica-a: records seq 0 to 11" in out
    assert out.splitlines()[-1].startswith("NOT verified")


def test_a_record_appended_after_the_last_checkpoint_does_not_verify(
    store_url: str, tmp_path: Path
) -> None:
    fill(store_url, 12)
    lines = export(store_url)
    assert verify(lines).ok
    last = orjson.loads([x for x in lines if is_record(x)][-1])
    extra = last["record"] | {"seq": 12, "request_id": "req-forged"}
    report = verify([*lines, orjson.dumps({"type": "record", "record": extra})])
    assert kinds(report) == ["unsigned"]
    assert "records seq 12 to 12 are covered by no signed checkpoint" in str(report.failures[0])

    _, public = key_files(tmp_path)
    path = tmp_path / "appended.jsonl"
    path.write_bytes(b"\n".join([*lines, orjson.dumps({"type": "record", "record": extra})]))
    code, out, _ = cli("verify", path, "--public-key", public)
    assert code == 1 and "FAIL unsigned" in out


def test_the_cli_export_signs_a_checkpoint_first_so_every_record_is_covered(
    store_url: str, tmp_path: Path
) -> None:
    fill(store_url, 7)  # checkpoints at 0, 5 and 7
    append_unsigned(store_url, 3)  # seq 7 to 9: committed, then the gateway was killed
    signing, public = key_files(tmp_path)
    out = tmp_path / "log.jsonl"

    # without the signing key nothing new is signed: the export ends at the latest checkpoint
    code, _, err = cli("export", "--store", store_url, "--config", no_key_config(tmp_path))
    assert code == 0 and "no signing key here" in err
    code, _, _ = cli(
        "export", "--store", store_url, "--config", no_key_config(tmp_path), "--out", out
    )
    assert code == 0
    code, report, _ = cli("verify", out, "--public-key", public)
    assert code == 0 and report.splitlines()[-1].startswith("verified: 7 records"), report

    # with it, a checkpoint of everything stored is signed and the export holds all of it
    code, _, err = cli("export", "--store", store_url, "--signing-key", signing, "--out", out)
    assert code == 0, err
    code, report, _ = cli("verify", out, "--public-key", public)
    assert code == 0 and report.splitlines()[-1].startswith("verified: 10 records"), report
    assert "note:" not in report
    sizes = [orjson.loads(x)["checkpoint"]["size"] for x in out.read_bytes().splitlines()[-1:]]
    assert sizes == [10]


def test_the_cli_export_signs_nothing_over_records_that_do_not_match_their_checkpoints(
    tmp_path: Path,
) -> None:
    store = tmp_path / "audit.sqlite3"
    fill(f"sqlite:{store}", 7)
    append_unsigned(f"sqlite:{store}", 2)
    with sqlite3.connect(store) as db:  # a record below the checkpoint of size 5 is rewritten
        (body,) = db.execute("SELECT body FROM audit_records WHERE seq = 3").fetchone()
        body = bytes(body).replace(b'"status":200', b'"status":201')
        db.execute(
            "UPDATE audit_records SET body = ?, leaf = ? WHERE seq = 3",
            (body, leaf_hash(body)),
        )
    signing, public = key_files(tmp_path)
    out = tmp_path / "log.jsonl"
    code, _, err = cli(
        "export", "--store", f"sqlite:{store}", "--signing-key", signing, "--out", out
    )
    assert code == 0
    assert "do not hash to the signed root of the checkpoint of size 5; nothing new" in err
    code, report, _ = cli("verify", out, "--public-key", public)
    assert code == 1 and "FAIL edited: records seq 0 to 4" in report
    assert "7 records" in report  # the unsigned tail was not signed over and not exported
