//! The crate's error type.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// An object-storage operation failed; names the operation and the object key.
    #[error("object storage: {op} {key}: {source}")]
    ObjectStore {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A block ID, object key or mark that is not acceptable (e.g. `..`, not a ULID).
    #[error("invalid {what} {value:?}: {detail}")]
    Invalid {
        what: &'static str,
        value: String,
        detail: String,
    },
    /// A file in the bucket that cannot be parsed (meta.json, a mark).
    #[error("corrupt {key}: {detail}")]
    Corrupt { key: String, detail: String },
    /// An error from the storage engine (reading or writing a block).
    #[error(transparent)]
    Tsdb(#[from] strata_tsdb::Error),
    // --- ship (objstore, shipper) ---
    /// An objstore configuration that cannot be used; `field` is its path (`config.bucket`).
    #[error("objstore configuration: {field}: {detail}")]
    Config { field: String, detail: String },
    /// The shipper's state file `thanos.shipper.json` cannot be parsed.
    #[error("shipper state {}: {detail}", path.display())]
    ShipperState {
        path: std::path::PathBuf,
        detail: String,
    },
}

impl Error {
    pub(crate) fn store(op: &'static str, key: impl ToString, source: object_store::Error) -> Self {
        Error::ObjectStore {
            op,
            key: key.to_string(),
            source,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
