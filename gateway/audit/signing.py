"""Ed25519 keys for checkpoints: generated, loaded from a file or a secret, exported for auditors.

A checkpoint signs the canonical JSON of {log_id, size, root, time}. Its `key_id` (the first 16
hex digits of the SHA-256 of the raw public key) lets a verifier tell a wrong key from a bad
signature. The same key signs tenant statements (`statement.py`), whose documents carry other
keys, so neither kind of signature can stand for the other.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit.canonical import canonical


def generate_private_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit signing key must be an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the audit public key must be an Ed25519 public key")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Checkpoint:
    log_id: str
    size: int
    root: str  # hex
    time: str  # RFC 3339, UTC
    key_id: str
    signature: str  # base64

    def signed_part(self) -> dict[str, Any]:
        return {"log_id": self.log_id, "size": self.size, "root": self.root, "time": self.time}

    def as_json(self) -> dict[str, Any]:
        return {**self.signed_part(), "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            log_id=str(data["log_id"]),
            size=int(data["size"]),
            root=str(data["root"]),
            time=str(data["time"]),
            key_id=str(data["key_id"]),
            signature=str(data["signature"]),
        )

    def verify(self, key: Ed25519PublicKey) -> bool:
        return signature_valid(key, self.signed_part(), self.signature)


def signature_valid(key: Ed25519PublicKey, document: dict[str, Any], signature: str) -> bool:
    """Whether `signature` (base64) signs the canonical JSON of `document` under `key`."""
    try:
        key.verify(base64.b64decode(signature), canonical(document))
    except (InvalidSignature, ValueError):
        return False
    return True


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        return cls(load_private_key(path.read_bytes()))

    def sign(self, log_id: str, size: int, root: bytes, time: str) -> Checkpoint:
        part = {"log_id": log_id, "size": size, "root": root.hex(), "time": time}
        return Checkpoint(log_id, size, root.hex(), time, self.key_id, self.signature(part))

    def signature(self, document: dict[str, Any]) -> str:
        """The base64 signature of the canonical JSON of `document`."""
        return base64.b64encode(self._key.sign(canonical(document))).decode()
