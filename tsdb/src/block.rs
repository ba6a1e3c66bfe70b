//! TODO: block
