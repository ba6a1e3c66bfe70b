//! TODO: tombstones
