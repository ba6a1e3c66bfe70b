//! Query results of the HTTP API (Prometheus's or Strata's JSON) in one comparable form, and
//! the comparison the differential tests use: same series, same timestamps, values equal
//! within 1e-6 relative (1e-9 absolute near zero; NaN equals NaN).

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub type Lbls = Vec<(String, String)>;

#[derive(Debug)]
pub enum Res {
    Err(String),
    Scalar(i64, f64),
    Str(i64, String),
    Vector(Vec<(Lbls, i64, f64)>),
    Matrix(Vec<(Lbls, Vec<(i64, f64)>)>),
}

pub fn prom_float(v: &serde_json::Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or_else(|e| panic!("value {s:?}: {e}")),
        None => panic!("value {v} is not a string"),
    }
}

pub fn prom_point(p: &serde_json::Value) -> (i64, f64) {
    let t = p[0].as_f64().expect("timestamp");
    ((t * 1000.0).round() as i64, prom_float(&p[1]))
}

pub fn prom_labels(m: &serde_json::Value) -> Lbls {
    let mut l: Lbls = m
        .as_object()
        .expect("metric object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
        .collect();
    l.sort();
    l
}

pub fn from_prom(v: &serde_json::Value) -> Res {
    if v["status"] != "success" {
        return Res::Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    let d = &v["data"];
    let r = &d["result"];
    match d["resultType"].as_str() {
        Some("scalar") => {
            let (t, f) = prom_point(r);
            Res::Scalar(t, f)
        }
        Some("string") => Res::Str(
            (r[0].as_f64().expect("t") * 1000.0).round() as i64,
            r[1].as_str().expect("string").to_string(),
        ),
        Some("vector") => Res::Vector(
            r.as_array()
                .expect("array")
                .iter()
                .map(|s| {
                    let (t, f) = prom_point(&s["value"]);
                    (prom_labels(&s["metric"]), t, f)
                })
                .collect(),
        ),
        Some("matrix") => Res::Matrix(
            r.as_array()
                .expect("array")
                .iter()
                .map(|s| {
                    let pts = s["values"]
                        .as_array()
                        .map(|a| a.iter().map(prom_point).collect())
                        .unwrap_or_default();
                    (prom_labels(&s["metric"]), pts)
                })
                .collect(),
        ),
        other => panic!("unknown result type {other:?} in {v}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison.

pub fn feq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let d = (a - b).abs();
    d <= 1e-6 * a.abs().max(b.abs()) || d <= 1e-9
}

pub fn show_labels(l: &Lbls) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v:?}");
    }
    s.push('}');
    s
}

/// Describes the first differences between Prometheus's result and Strata's, if any.
pub fn compare(prom: &Res, ours: &Res, ordered: bool) -> Option<String> {
    match (prom, ours) {
        (Res::Err(_), Res::Err(_)) => None,
        (Res::Err(e), o) => Some(format!(
            "Prometheus failed ({e}) but Strata returned {}",
            short(o)
        )),
        (p, Res::Err(e)) => Some(format!(
            "Strata failed: {e} (Prometheus returned {})",
            short(p)
        )),
        (Res::Scalar(t1, v1), Res::Scalar(t2, v2)) => {
            (t1 != t2 || !feq(*v1, *v2)).then(|| format!("scalar: want {v1}@{t1}, got {v2}@{t2}"))
        }
        (Res::Str(t1, v1), Res::Str(t2, v2)) => {
            (t1 != t2 || v1 != v2).then(|| format!("string: want {v1:?}@{t1}, got {v2:?}@{t2}"))
        }
        (Res::Vector(a), Res::Vector(b)) => compare_vectors(a, b, ordered),
        (Res::Matrix(a), Res::Matrix(b)) => compare_matrices(a, b),
        (p, o) => Some(format!("result type: want {}, got {}", short(p), short(o))),
    }
}

pub fn short(r: &Res) -> String {
    match r {
        Res::Err(e) => format!("error {e}"),
        Res::Scalar(t, v) => format!("scalar {v}@{t}"),
        Res::Str(t, v) => format!("string {v:?}@{t}"),
        Res::Vector(v) => format!("vector of {}", v.len()),
        Res::Matrix(m) => format!("matrix of {}", m.len()),
    }
}

pub fn compare_vectors(
    a: &[(Lbls, i64, f64)],
    b: &[(Lbls, i64, f64)],
    ordered: bool,
) -> Option<String> {
    let mut diffs = Vec::new();
    let am: BTreeMap<&Lbls, (i64, f64)> = a.iter().map(|(l, t, v)| (l, (*t, *v))).collect();
    let bm: BTreeMap<&Lbls, (i64, f64)> = b.iter().map(|(l, t, v)| (l, (*t, *v))).collect();
    if bm.len() != b.len() {
        diffs.push("Strata returned duplicate label sets".to_string());
    }
    for (l, (t, v)) in &am {
        match bm.get(l) {
            None => diffs.push(format!("missing {} = {v}@{t}", show_labels(l))),
            Some((t2, v2)) if t2 != t || !feq(*v, *v2) => {
                diffs.push(format!("{}: want {v}@{t}, got {v2}@{t2}", show_labels(l)))
            }
            _ => {}
        }
    }
    for (l, (t, v)) in &bm {
        if !am.contains_key(l) {
            diffs.push(format!("unexpected {} = {v}@{t}", show_labels(l)));
        }
    }
    if diffs.is_empty() && ordered {
        let va: Vec<f64> = a.iter().map(|s| s.2).collect();
        let vb: Vec<f64> = b.iter().map(|s| s.2).collect();
        if va.len() != vb.len() || va.iter().zip(&vb).any(|(x, y)| !feq(*x, *y)) {
            diffs.push(format!("order of values: want {va:?}, got {vb:?}"));
        }
    }
    summarize(diffs, a.len(), b.len())
}

pub fn compare_matrices(
    a: &[(Lbls, Vec<(i64, f64)>)],
    b: &[(Lbls, Vec<(i64, f64)>)],
) -> Option<String> {
    let mut diffs = Vec::new();
    let am: BTreeMap<&Lbls, &Vec<(i64, f64)>> = a.iter().map(|(l, p)| (l, p)).collect();
    let bm: BTreeMap<&Lbls, &Vec<(i64, f64)>> = b.iter().map(|(l, p)| (l, p)).collect();
    if bm.len() != b.len() {
        diffs.push("Strata returned duplicate label sets".to_string());
    }
    for (l, pa) in &am {
        let Some(pb) = bm.get(l) else {
            diffs.push(format!(
                "missing series {} ({} points)",
                show_labels(l),
                pa.len()
            ));
            continue;
        };
        let ma: BTreeMap<i64, f64> = pa.iter().copied().collect();
        let mb: BTreeMap<i64, f64> = pb.iter().copied().collect();
        let mut first = None;
        let mut n = 0;
        for (t, v) in &ma {
            let bad = match mb.get(t) {
                None => Some(format!("t={t} want {v}, got nothing")),
                Some(w) if !feq(*v, *w) => Some(format!("t={t} want {v}, got {w}")),
                _ => None,
            };
            if let Some(bad) = bad {
                n += 1;
                first.get_or_insert(bad);
            }
        }
        for (t, w) in &mb {
            if !ma.contains_key(t) {
                n += 1;
                first.get_or_insert(format!("t={t} want nothing, got {w}"));
            }
        }
        if let Some(f) = first {
            diffs.push(format!(
                "{}: {n} of {}/{} points differ, first {f}",
                show_labels(l),
                pa.len(),
                pb.len()
            ));
        }
    }
    for (l, pb) in &bm {
        if !am.contains_key(l) {
            diffs.push(format!(
                "unexpected series {} ({} points)",
                show_labels(l),
                pb.len()
            ));
        }
    }
    summarize(diffs, a.len(), b.len())
}

pub fn summarize(diffs: Vec<String>, want: usize, got: usize) -> Option<String> {
    if diffs.is_empty() {
        return None;
    }
    let mut s = format!(
        "{} differences (want {want} series, got {got}):",
        diffs.len()
    );
    for d in diffs.iter().take(3) {
        let _ = write!(s, "\n      {d}");
    }
    if diffs.len() > 3 {
        let _ = write!(s, "\n      ...");
    }
    Some(s)
}
