//! JSON rendering shared by the HTTP API and `strata promql query`: query results
//! (`resultType` + `result`), sample values and timestamps exactly as Prometheus prints them,
//! label sets, and the parsing of API time parameters (RFC 3339 or Unix seconds).
//!
//! Query results are written straight into a `String` rather than through `serde_json::Value`:
//! a matrix of a million points would otherwise allocate a million small maps, and Prometheus
//! prints timestamps as `<secs>.<millis>` (e.g. `1.500`), which a float serializer cannot do.

use std::fmt::Write;

use strata_promql::engine::Value;
use strata_tsdb::Labels;

/// Prometheus's `MinTime` (the default start of optional time ranges), in ms.
pub const MIN_TIME: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus's `MaxTime` (the default end of optional time ranges), in ms.
pub const MAX_TIME: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// Parses a time as Prometheus's API does: RFC 3339 or (fractional) Unix seconds; returns ms.
/// The error reads as Prometheus's: `cannot parse "x" to a valid timestamp`.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.trim().parse::<f64>() {
        if !f.is_finite() || f.abs() * 1000.0 >= i64::MAX as f64 {
            return Err(bad());
        }
        // Prometheus rounds the fraction to milliseconds.
        let secs = f.trunc();
        let ms = ((f - secs) * 1000.0).round();
        return Ok(secs as i64 * 1000 + ms as i64);
    }
    // Prometheus's own boundary times, which Go's parser cannot read back.
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME),
        "292277026-12-04T15:30:07.999999999Z" => return Ok(MAX_TIME),
        _ => {}
    }
    parse_rfc3339(s).ok_or_else(bad)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse::<i64>().ok()
    };
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == st {
            return None;
        }
        let mut digits: String = s[st..i].chars().take(3).collect();
        while digits.len() < 3 {
            digits.push('0');
        }
        ms = digits.parse().ok()?;
    }
    let tz = &s[i..];
    let off_min = match tz {
        "Z" | "z" => 0,
        _ if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes()[3] == b':' =>
        {
            let hh: i64 = tz.get(1..3)?.parse().ok()?;
            let mm: i64 = tz.get(4..6)?.parse().ok()?;
            let v = hh * 60 + mm;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec - off_min * 60) * 1000) + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let (yy, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats a millisecond Unix time as Go's `time.Time` JSON does (RFC 3339, UTC, fractional
/// seconds only when non-zero): `2024-05-01T12:00:00.5Z`.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Formats a sample value as Prometheus's API does (`strconv.FormatFloat(v, 'f', -1, 64)`,
/// with `NaN`, `+Inf`, `-Inf`).
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        let a = v.abs();
        if a != 0.0 && !(1e-6..1e21).contains(&a) {
            // Go's `strconv.FormatFloat(v, 'e', -1, 64)`: shortest digits, two-digit exponent.
            let e = format!("{v:e}");
            let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
        } else {
            format!("{v}")
        }
    }
}

/// Writes a millisecond timestamp as Prometheus does: seconds, then `.` and three digits of
/// milliseconds when they are not zero (`1435781451.781`, `1.500`, `10`).
pub fn write_timestamp(out: &mut String, t: i64) {
    let (neg, t) = if t < 0 {
        (true, t.unsigned_abs())
    } else {
        (false, t as u64)
    };
    if neg {
        out.push('-');
    }
    let _ = write!(out, "{}", t / 1000);
    let frac = t % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// Writes a millisecond timestamp as Go's `encoding/json` writes `float64(t)/1000` (used by
/// Prometheus for scalar and string results): the shortest decimal, `1.5`, `100`.
pub fn write_float_timestamp(out: &mut String, t: i64) {
    let f = t as f64 / 1000.0;
    if f.abs() >= 1e21 {
        let _ = write!(out, "{f:e}");
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Writes `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go's encoder escapes these for safe embedding in HTML; so do we.
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes a label set as a JSON object (`{"__name__":"up","job":"x"}`).
pub fn write_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &x.name);
        out.push(':');
        write_str(out, &x.value);
    }
    out.push('}');
}

/// A label set as a `serde_json` object.
pub fn labels_json(l: &Labels) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for x in l.iter() {
        m.insert(
            x.name.to_string(),
            serde_json::Value::String(x.value.to_string()),
        );
    }
    serde_json::Value::Object(m)
}

/// Writes one `[<timestamp>,"<value>"]` pair.
pub fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    out.push_str(&fmt_value(v));
    out.push_str("\"]");
}

/// Writes the `resultType` and `result` members of a query response's `data` object, without
/// the surrounding braces (so callers can append `stats`).
pub fn write_result_members(out: &mut String, v: &Value) {
    out.push_str("\"resultType\":\"");
    out.push_str(v.type_name());
    out.push_str("\",\"result\":");
    match v {
        Value::Scalar { t, v } => {
            out.push('[');
            write_float_timestamp(out, *t);
            out.push_str(",\"");
            out.push_str(&fmt_value(*v));
            out.push_str("\"]");
        }
        Value::String { t, v } => {
            out.push('[');
            write_float_timestamp(out, *t);
            out.push(',');
            write_str(out, v);
            out.push(']');
        }
        Value::Vector(s) => {
            out.push('[');
            for (i, s) in s.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(out, &s.metric);
                out.push_str(",\"value\":");
                write_point(out, s.t, s.f);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(m) => {
            out.push('[');
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(out, &s.metric);
                out.push_str(",\"values\":[");
                for (j, (t, v)) in s.floats.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(out, *t, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
}

/// The `data` object of a query response: `{"resultType":...,"result":...}`.
pub fn value_json(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    write_result_members(&mut out, v);
    out.push('}');
    out
}

/// A whole successful response envelope around raw `data` JSON, with warnings and infos
/// (omitted when empty, as Prometheus does).
pub fn success_envelope(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, w);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// An error response envelope: `{"status":"error","errorType":...,"error":...}`.
pub fn error_envelope(error_type: &str, error: &str) -> String {
    let mut out = String::with_capacity(error.len() + 64);
    out.push_str("{\"status\":\"error\",\"errorType\":");
    write_str(&mut out, error_type);
    out.push_str(",\"error\":");
    write_str(&mut out, error);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_promql::engine::{Sample, Series};

    #[test]
    fn times() {
        assert_eq!(parse_time("1.5").unwrap(), 1500);
        assert_eq!(parse_time("-1.5").unwrap(), -1500);
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00").unwrap(),
            1_435_781_451_000
        );
        assert_eq!(
            parse_time("yesterday").unwrap_err(),
            "cannot parse \"yesterday\" to a valid timestamp"
        );
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_time("-292273086-05-16T16:47:06Z").unwrap(), MIN_TIME);
        assert_eq!(MIN_TIME, -9_223_309_901_257_974_000);
        assert_eq!(MAX_TIME, 9_223_309_901_257_974_999);
    }

    #[test]
    fn rfc3339_round_trip() {
        for ms in [
            0i64,
            1_435_781_451_781,
            1_700_000_000_500,
            -86_400_001,
            951_782_400_000,
        ] {
            assert_eq!(parse_time(&format_rfc3339(ms)).unwrap(), ms, "{ms}");
        }
        assert_eq!(format_rfc3339(1_435_781_451_000), "2015-07-01T20:10:51Z");
        assert_eq!(format_rfc3339(1_435_781_451_500), "2015-07-01T20:10:51.5Z");
    }

    #[test]
    fn values_and_timestamps() {
        // Prometheus switches to exponent form below 1e-6 and from 1e21 on.
        assert_eq!(fmt_value(1e21), "1e+21");
        assert_eq!(fmt_value(123e20), "1.23e+22");
        assert_eq!(fmt_value(4.91e-7), "4.91e-07");
        assert_eq!(fmt_value(-2.5e-300), "-2.5e-300");
        assert_eq!(fmt_value(0.000001), "0.000001");
        assert_eq!(fmt_value(1e20), "100000000000000000000");
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_value(0.1), "0.1");
        assert_eq!(fmt_value(f64::NEG_INFINITY), "-Inf");
        let mut s = String::new();
        write_timestamp(&mut s, 1500);
        s.push(' ');
        write_timestamp(&mut s, 10_000);
        s.push(' ');
        write_timestamp(&mut s, -1_005);
        s.push(' ');
        write_timestamp(&mut s, 1_435_781_451_781);
        assert_eq!(s, "1.500 10 -1.005 1435781451.781");
    }

    #[test]
    fn results() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a\"b")]);
        let v = Value::Vector(vec![Sample {
            metric: l.clone(),
            t: 1000,
            f: 1.0,
        }]);
        assert_eq!(
            value_json(&v),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]}"#
        );
        let m = Value::Matrix(vec![Series {
            metric: l,
            floats: vec![(0, f64::NAN), (1_500, 2.5)],
        }]);
        let j: serde_json::Value = serde_json::from_str(&value_json(&m)).unwrap();
        assert_eq!(j["result"][0]["values"][1][0], 1.5);
        assert_eq!(j["result"][0]["values"][0][1], "NaN");
        assert_eq!(
            value_json(&Value::Scalar { t: 1500, v: 2.0 }),
            r#"{"resultType":"scalar","result":[1.5,"2"]}"#
        );
        assert_eq!(
            value_json(&Value::String {
                t: 0,
                v: "<x>".into()
            }),
            r#"{"resultType":"string","result":[0,"\u003cx\u003e"]}"#
        );
        let e = success_envelope("[]", &["w".into()], &[]);
        assert_eq!(e, r#"{"status":"success","data":[],"warnings":["w"]}"#);
    }
}
