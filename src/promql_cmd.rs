//! `strata promql …`: `test` runs Prometheus `.test` scripts through the engine; `query`
//! evaluates an expression against a data directory offline and prints the result as the
//! `/api/v1/query` and `/api/v1/query_range` endpoints format it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};
use strata_promql::engine::{QueryOptions, Value};
use strata_promql::promqltest::runner::{run_script, test_engine};
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
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            bail!("invalid time {s:?}");
        }
        return Ok((f * 1000.0).round() as i64);
    }
    parse_rfc3339(s)
        .with_context(|| format!("invalid time {s:?}: expected RFC 3339 or Unix seconds"))
}

fn parse_rfc3339(s: &str) -> Result<i64> {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        bail!("not RFC 3339");
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        Ok(s.get(r).context("short")?.parse::<i64>()?)
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[st..i];
        let mut digits: String = frac.chars().take(3).collect();
        while digits.len() < 3 {
            digits.push('0');
        }
        ms = digits.parse()?;
    }
    let tz = &s[i..];
    let off_min = match tz {
        "Z" | "z" => 0,
        _ if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let hh: i64 = tz[1..3].parse()?;
            let mm: i64 = tz[4..6].parse()?;
            let v = hh * 60 + mm;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => bail!("bad zone"),
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (yy, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3600 + mi * 60 + sec - off_min * 60) * 1000) + ms)
}

/// Formats a sample value as Prometheus's API does.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn fmt_ts(t: i64) -> Json {
    json!(t as f64 / 1000.0)
}

fn metric_json(l: &strata_tsdb::Labels) -> Json {
    let mut m = serde_json::Map::new();
    for x in l.iter() {
        m.insert(x.name.to_string(), Json::String(x.value.to_string()));
    }
    Json::Object(m)
}

/// The `data` object of a query response.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Scalar { t, v } => {
            json!({"resultType": "scalar", "result": [fmt_ts(*t), fmt_value(*v)]})
        }
        Value::String { t, v } => json!({"resultType": "string", "result": [fmt_ts(*t), v]}),
        Value::Vector(s) => json!({
            "resultType": "vector",
            "result": s.iter().map(|s| json!({"metric": metric_json(&s.metric), "value": [fmt_ts(s.t), fmt_value(s.f)]})).collect::<Vec<_>>()
        }),
        Value::Matrix(m) => json!({
            "resultType": "matrix",
            "result": m.iter().map(|s| json!({
                "metric": metric_json(&s.metric),
                "values": s.floats.iter().map(|(t, v)| json!([fmt_ts(*t), fmt_value(*v)])).collect::<Vec<_>>()
            })).collect::<Vec<_>>()
        }),
    }
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
            println!(
                "{}",
                json!({"status": "error", "errorType": "bad_data", "error": e.to_string()})
            );
            std::process::exit(1);
        }
    };
    let qo = QueryOptions {
        lookback_delta: match a.lookback {
            Some(l) => Some(strata_promql::parser::parse_duration_or_seconds(l)?),
            None => None,
        },
        timeout: None,
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
            let mut out = json!({"status": "success", "data": value_json(&r.value)});
            let w = r.annotations.warnings(a.expr);
            let i = r.annotations.infos(a.expr);
            if !w.is_empty() {
                out["warnings"] = json!(w);
            }
            if !i.is_empty() {
                out["infos"] = json!(i);
            }
            println!("{out}");
            Ok(())
        }
        Err(e) => {
            let kind = match e {
                strata_promql::Error::Parse(_) | strata_promql::Error::InvalidDuration(_) => {
                    "bad_data"
                }
                strata_promql::Error::Timeout(_) => "timeout",
                _ => "execution",
            };
            println!(
                "{}",
                json!({"status": "error", "errorType": kind, "error": e.to_string()})
            );
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
        assert_eq!(fmt_value(1e21), "1000000000000000000000");
        assert_eq!(fmt_value(0.1), "0.1");
    }
}
