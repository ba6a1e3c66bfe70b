//! TODO: head
