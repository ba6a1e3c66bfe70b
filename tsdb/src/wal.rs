//! TODO: wal
