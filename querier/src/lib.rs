//! The query side of the server: the Prometheus HTTP API (axum), remote read, the bucket store
//! that serves blocks in object storage, and the fan-in with replica deduplication.

pub mod api;
pub mod bucket;
pub mod remote_read;
