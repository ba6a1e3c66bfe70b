//! TODO: chunks
