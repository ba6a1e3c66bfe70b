//! Long-term storage maintenance: the block planner, downsampling, retention, the shipper that
//! uploads blocks to object storage in Thanos's layout, and the bucket tools (`ls`, `inspect`,
//! `verify`, `mark`, `cleanup`).
//!
//! * [`bucket`]: the Thanos bucket layout over any `object_store` (list, upload, download,
//!   delete, marks).
//! * [`retry`]: retries of failed object-store requests, around every bucket.
//! * [`faulty`]: an object store that fails and stalls on purpose (tests, benches).
//! * [`objstore`]: Thanos's objstore YAML (FILESYSTEM, S3, GCS, AZURE) to a bucket.
//! * [`shipper`]: uploads local blocks to the bucket, as Thanos's sidecar does.
//! * [`downsample`]: Thanos's aggregate chunks (encoding 0xff) and 5m/1h downsampling.
//! * [`planner`]: grouping by resolution and external labels, Thanos's compaction plan.
//! * [`compact`]: a compactor pass over a bucket (garbage, compaction, downsampling).
//! * [`retention`]: per-resolution retention, delete-delay deletion, partial-upload cleanup.
//! * [`verify`]: thorough checks of downloaded blocks and overlap detection.
//! * [`faulty`]: a fault-injecting object store wrapper (test and benchmark support).

pub mod bucket;
pub mod compact;
pub mod downsample;
pub mod error;
pub mod faulty;
pub mod objstore;
pub mod planner;
pub mod retention;
pub mod retry;
pub mod shipper;
#[cfg(test)]
mod testutil;
pub mod verify;

pub use error::{Error, Result};
