//! Long-term storage maintenance: the block planner, downsampling, retention, the shipper that
//! uploads blocks to object storage in Thanos's layout, and the bucket tools (`ls`, `inspect`,
//! `verify`, `mark`, `cleanup`).
//!
//! * [`bucket`]: the Thanos bucket layout over any `object_store` (list, upload, download,
//!   delete, marks).

pub mod bucket;
pub mod error;

pub use error::{Error, Result};
pub mod compact;
pub mod downsample;
pub mod planner;
pub mod retention;
#[cfg(test)]
mod testutil;
