//! Strata's storage engine. Names follow Prometheus's TSDB packages so that anyone who knows
//! Prometheus finds their way: [`labels`], [`chunkenc`], [`chunks`], [`index`], [`wal`],
//! [`head`], [`block`], [`compact`], [`tombstones`], [`storage`], and [`db`] which ties them
//! together. All on-disk formats are Prometheus's own, byte for byte (see `docs/formats.md`).

pub mod block;
pub mod chunkenc;
pub mod chunks;
pub mod compact;
pub mod db;
pub mod duration;
pub mod encoding;
pub mod error;
pub mod fasthash;
pub mod head;
pub mod head_chunks;
pub mod index;
pub mod labels;
pub mod postings;
pub mod storage;
pub mod tombstones;
pub mod wal;

pub use error::{Error, Result};
pub use labels::{Label, Labels, MatchType, Matcher};
