//! Append-only, tamper-evident audit log store: segments, Merkle tree, signed checkpoints.
