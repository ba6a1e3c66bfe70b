//! Long-term storage maintenance: the block planner, downsampling, retention, the shipper that
//! uploads blocks to object storage in Thanos's layout, and the bucket tools (`ls`, `inspect`,
//! `verify`, `mark`, `cleanup`).
//!
//! * [`bucket`]: the Thanos bucket layout over any `object_store` (list, upload, download,
//!   delete, marks).
//! * [`objstore`]: Thanos's objstore YAML (FILESYSTEM, S3, GCS, AZURE) to a bucket.
//! * [`shipper`]: uploads local blocks to the bucket, as Thanos's sidecar does.

pub mod bucket;
pub mod error;
pub mod objstore;
pub mod shipper;

pub use error::{Error, Result};
