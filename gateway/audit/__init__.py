"""The tamper-evident audit log: records, Merkle tree, signed checkpoints, stores, verification."""
