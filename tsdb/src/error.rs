//! The crate's one error type. Every variant carries enough context (file, block, series,
//! offset) for an operator to find what went wrong.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file or directory.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored data that does not decode: bad magic, bad CRC, truncated section, bad varint.
    #[error("corrupt {what} in {path} at offset {offset}: {detail}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// A block directory that cannot be opened.
    #[error("block {ulid}: {detail}")]
    Block { ulid: String, detail: String },
    /// A chunk encoding this build does not know.
    #[error("unknown chunk encoding {0}")]
    UnknownEncoding(u8),
    /// A chunk whose bytes are malformed.
    #[error("invalid chunk: {0}")]
    InvalidChunk(String),
    /// A sample older than what the series already holds (and outside the OOO window).
    #[error("out of order sample")]
    OutOfOrderSample,
    /// A sample with the same timestamp as the newest one but another value.
    #[error("duplicate sample for timestamp")]
    DuplicateSampleForTimestamp,
    /// A sample older than the head's allowed minimum time.
    #[error("out of bounds")]
    OutOfBounds,
    /// A label set that Prometheus would reject (empty name, duplicate name, ...).
    #[error("invalid labels: {0}")]
    InvalidLabels(String),
    /// A regular expression in a matcher that does not compile.
    #[error("invalid regular expression {pattern:?}: {detail}")]
    InvalidRegex { pattern: String, detail: String },
    /// A series reference that names no series.
    #[error("unknown series reference {0}")]
    UnknownSeriesRef(u64),
    /// The data directory is locked by another process.
    #[error("data directory {path} is locked by another process (lock file {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
    /// The database or appender was used after close.
    #[error("database is closed")]
    Closed,
    /// A value out of the range the format can represent.
    #[error("{0}")]
    Invalid(String),
    /// JSON (meta.json) that does not parse.
    #[error("meta.json {path}: {source}")]
    Meta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Convenience constructor for I/O errors.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Convenience constructor for corruption errors.
    pub fn corrupt(
        what: &'static str,
        path: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            what,
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }
}
