//! Prometheus's remote protocols: the protobuf messages of remote write 1.0/2.0 and remote read
//! ([`proto`]), and the remote-write receiver ([`write`]). The remote-read handler lives in the
//! querier and uses [`proto`] and [`RemoteError`] from here.

pub mod proto;
pub mod write;

#[cfg(test)]
mod tests;

pub use write::{
    append_batch, append_batch_at, decode_write, response_headers, AppendReport, Exemplar,
    MetricMetadata, Protocol, WriteBatch, WriteLimits, WriteSeries,
};

/// A request the remote protocols refuse as a whole: the HTTP status to answer (400, 413 or 415)
/// and a message for the response body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub status: u16,
    pub message: String,
}

impl RemoteError {
    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// 413 Payload Too Large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: 413,
            message: message.into(),
        }
    }

    /// 415 Unsupported Media Type.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self {
            status: 415,
            message: message.into(),
        }
    }

    /// 500 Internal Server Error (a storage failure while serving a request).
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
        }
    }
}
