//! TODO: db
