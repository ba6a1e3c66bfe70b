//! TODO: head_chunks
