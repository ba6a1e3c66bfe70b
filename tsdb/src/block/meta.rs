//! meta.json
