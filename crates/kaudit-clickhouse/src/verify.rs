//! Verification from ClickHouse (filled in below).
