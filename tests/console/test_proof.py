"""The inclusion proof a record page checks, on a store of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.setup import open_store
from gateway.audit.signing import Signer
from gateway.audit.writer import AuditWriter
from gateway.console.record import ProofCheck, check_proof

SIGNER = Signer(Ed25519PrivateKey.generate())


def _proofs(path: Path) -> tuple[ProofCheck, ProofCheck, ProofCheck, ProofCheck]:
    url = f"sqlite:{path}"

    async def run() -> tuple[ProofCheck, ProofCheck, ProofCheck, ProofCheck]:
        writer = AuditWriter(open_store(url), SIGNER, "log-a", checkpoint_interval_s=3600)
        await writer.start()
        for i in range(30):
            await writer.append(
                {"v": 1, "time": f"2026-11-01T00:00:{i:02d}.000000Z", "tenant": "t"}
            )
        await writer.stop()  # signs a checkpoint over all 30
        store = open_store(url)
        await store.open()
        try:
            stored = await store.record("log-a", 17)
            assert stored is not None
            big = await check_proof(store, stored, SIGNER.public_key, max_leaves=10)
            proved = await check_proof(store, stored, SIGNER.public_key, max_leaves=None)
            other_key = Signer(Ed25519PrivateKey.generate()).public_key
            wrong_key = await check_proof(store, stored, other_key)
            stored.body = stored.body.replace(b'"tenant":"t"', b'"tenant":"u"')
            edited = await check_proof(store, stored, SIGNER.public_key)
        finally:
            await store.aclose()
        return big, proved, wrong_key, edited

    return asyncio.run(run())


def test_a_record_is_proved_against_the_signed_checkpoint(tmp_path: Path) -> None:
    big, proved, wrong_key, edited = _proofs(tmp_path / "audit.sqlite3")
    assert proved.ok and proved.included and proved.signature_ok and proved.leaf_matches
    assert len(proved.path) == 5  # ceil(log2(30))
    assert proved.checkpoint is not None and proved.checkpoint["size"] == 30
    # a log too large to prove while the page loads: the proof waits for a click
    assert big.deferred == 30 and not big.ok and not big.path
    assert not wrong_key.ok and not wrong_key.signature_ok and wrong_key.included
    assert not edited.ok and not edited.leaf_matches and not edited.included
