//! The `strata` binary: CLI parsing and wiring of roles; no storage or query logic lives here.
fn main() {}
