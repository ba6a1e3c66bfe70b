//! Persistent blocks. For now only the `meta.json` module lives here; the block reader and
//! writer come later.

pub mod meta;
