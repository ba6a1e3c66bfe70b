//! Test-only access to Prometheus's textparse fixtures in the shared folder beside the
//! repository, for both text parsers' tests.

/// The fixtures directory.
pub(crate) const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/prometheus/textparse"
);

/// The fixture files whose names end with `suffix`, sorted; panics naming the directory when
/// the fixtures are missing.
pub(crate) fn fixtures(suffix: &str) -> Vec<std::path::PathBuf> {
    let dir = std::fs::read_dir(TESTDATA).unwrap_or_else(|e| {
        panic!("Prometheus's textparse fixtures are required at {TESTDATA} (the shared/ folder beside the repo): {e}")
    });
    let mut files: Vec<_> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}
