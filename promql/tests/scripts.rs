//! Runs PromQL `.test` scripts through the engine: Strata's own scripts in `promql/testdata/`
//! must pass completely; Prometheus's scripts in `../shared/prometheus/promql-tests/` must not
//! regress below the recorded number of passing evals.

use std::path::{Path, PathBuf};

use strata_promql::promqltest::runner::{run_script, test_engine, FileReport};

/// Evals of Prometheus's scripts known to pass; raise it as the engine improves.
const PROMETHEUS_BASELINE: usize = 1277;

fn scripts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no .test files in {}", dir.display());
    v
}

fn run(path: &Path) -> FileReport {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    run_script(&path.display().to_string(), &text, &test_engine())
}

#[test]
fn strata_scripts_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut problems = Vec::new();
    for p in scripts(&dir) {
        let r = run(&p);
        if let Some(e) = r.script_error {
            problems.push(format!("{}: {e}", p.display()));
        }
        for (line, expr, why) in r.failures {
            problems.push(format!("{}:{line}: {expr}\n    {why}", p.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "failing evals:\n{}",
        problems.join("\n")
    );
}

#[test]
fn prometheus_scripts_do_not_regress() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/prometheus/promql-tests");
    let (mut passed, mut not_passed) = (0, 0);
    for p in scripts(&dir) {
        let r = run(&p);
        assert!(
            r.script_error.is_none(),
            "{}: {:?}",
            p.display(),
            r.script_error
        );
        eprintln!(
            "{}: {} passed, {} failed, {} unsupported",
            p.file_name().unwrap_or_default().to_string_lossy(),
            r.passed,
            r.failed,
            r.unsupported
        );
        passed += r.passed;
        not_passed += r.not_passed();
    }
    eprintln!("Prometheus scripts: {passed} passed, {not_passed} not passed");
    assert_eq!(
        passed + not_passed,
        2214,
        "every eval of the 21 files is counted"
    );
    assert!(
        passed >= PROMETHEUS_BASELINE,
        "{passed} evals pass, fewer than the recorded {PROMETHEUS_BASELINE}"
    );
}
