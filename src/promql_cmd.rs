//! `strata promql …`: `test` runs Prometheus `.test` scripts through the engine; `query`
//! evaluates an expression against a data directory offline and prints the result as the
//! `/api/v1/query` and `/api/v1/query_range` endpoints format it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use strata_promql::engine::QueryOptions;
use strata_promql::promqltest::runner::{run_script, test_engine};
use strata_querier::api::json;
use strata_tsdb::db::{Db, DbOptions};

/// `strata promql test <files...>`. Returns whether every eval passed.
pub fn test(files: &[PathBuf], show: usize) -> Result<bool> {
    let engine = test_engine();
    let (mut passed, mut failed) = (0usize, 0usize);
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let rep = run_script(&f.display().to_string(), &text, &engine);
        if let Some(e) = &rep.script_error {
            println!("{}: script error: {e}", f.display());
            failed += 1;
            continue;
        }
        println!(
            "{}: {} passed, {} failed, {} unsupported",
            f.display(),
            rep.passed,
            rep.failed,
            rep.unsupported
        );
        for (line, expr, why) in rep
            .failures
            .iter()
            .filter(|f| !f.2.starts_with("unsupported"))
            .take(show)
        {
            println!("  line {line}: {expr}\n    {why}");
        }
        passed += rep.passed;
        failed += rep.not_passed();
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// Parses a time as Prometheus's API does: RFC 3339 or (fractional) Unix seconds; returns ms.
pub fn parse_time(s: &str) -> Result<i64> {
    json::parse_time(s).map_err(anyhow::Error::msg)
}

/// Arguments of `strata promql query`.
pub struct QueryArgs<'a> {
    pub dir: &'a Path,
    pub expr: &'a str,
    pub time: Option<&'a str>,
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    pub step: Option<&'a str>,
    pub lookback: Option<&'a str>,
}

/// `strata promql query`.
pub fn query(a: QueryArgs) -> Result<()> {
    let db = Db::open(
        a.dir,
        DbOptions {
            read_only: true,
            compaction_interval: None,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", a.dir.display()))?;
    for b in db.broken_blocks() {
        eprintln!("warning: skipping block {}: {}", b.dir.display(), b.error);
    }
    let engine = strata_promql::Engine::default();
    let expr = match strata_promql::parser::parse(a.expr) {
        Ok(e) => e,
        Err(e) => {
            println!("{}", json::error_envelope("bad_data", &e.to_string()));
            std::process::exit(1);
        }
    };
    let qo = QueryOptions {
        lookback_delta: match a.lookback {
            Some(l) => Some(strata_promql::parser::parse_duration_or_seconds(l)?),
            None => None,
        },
        timeout: None,
        ..Default::default()
    };
    let res = match (a.start, a.end, a.step) {
        (Some(s), Some(e), Some(st)) => {
            let step = strata_promql::parser::parse_duration_or_seconds(st)?;
            if step <= 0 {
                bail!("zero or negative query resolution step widths are not accepted. Try a positive integer");
            }
            engine.exec(&*db, &expr, parse_time(s)?, parse_time(e)?, step, &qo)
        }
        (None, None, None) => {
            let t = match a.time {
                Some(t) => parse_time(t)?,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis() as i64,
            };
            engine.exec(&*db, &expr, t, t, 0, &qo)
        }
        _ => bail!("give either --time, or all of --start, --end and --step"),
    };
    match res {
        Ok(r) => {
            println!(
                "{}",
                json::success_envelope(
                    &json::value_json(&r.value),
                    &r.annotations.warnings(a.expr),
                    &r.annotations.infos(a.expr)
                )
            );
            Ok(())
        }
        Err(e) => {
            let err = strata_querier::api::ApiError::from_promql(&e);
            println!("{}", json::error_envelope(err.typ.as_str(), &err.msg));
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1.5").unwrap(), 1500);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00").unwrap(),
            1_435_781_451_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
