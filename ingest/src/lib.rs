//! Everything that brings samples in: exposition-format parsers (OpenMetrics and Prometheus text,
//! written with nom), remote-write decoding ([`remote`]), the scrape manager and relabeling, and the agent's
//! durable remote-write queue. Ingest reaches storage only through
//! [`strata_tsdb::storage::Appender`].

pub mod agent;
pub mod config;
pub mod discovery;
pub mod error;
pub mod http;
pub mod intern;
pub mod openmetrics;
pub mod promtext;
pub mod relabel;
pub mod remote;
pub mod scrape;
pub mod scrape_format;
pub mod targets;
pub mod textparse;

pub use error::Error;
