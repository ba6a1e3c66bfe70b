//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/{name}/values`: metadata lookups
//! through the queryable, with Prometheus's `match[]` and `limit` semantics.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use strata_tsdb::storage::SelectHints;
use strata_tsdb::{Labels, Matcher};

use super::json::{self, MAX_TIME, MIN_TIME};
use super::{parse_limit, parse_time_param, ApiError, ApiOk, ApiState, ErrorType, Params};

const TRUNCATED: &str = "results truncated due to limit";

/// Prometheus's `parseMatchersParam`: every selector must have a matcher that does not match
/// the empty string.
fn parse_matchers(raw: &[&str]) -> Result<Vec<Vec<Matcher>>, String> {
    let mut sets = Vec::with_capacity(raw.len());
    for s in raw {
        let ms = strata_promql::parser::parse_metric_selector(s).map_err(|e| e.to_string())?;
        if !ms.iter().any(|m| !m.matches("")) {
            return Err("match[] must contain at least one non-empty matcher".into());
        }
        sets.push(ms);
    }
    Ok(sets)
}

/// Runs storage work on a blocking thread.
async fn blocking<T: Send + 'static>(
    st: &Arc<ApiState>,
    kind: &'static str,
    f: impl FnOnce(&ApiState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let t0 = Instant::now();
    let st2 = st.clone();
    let r = tokio::task::spawn_blocking(move || f(&st2))
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?;
    st.metrics.observe_query(kind, t0.elapsed().as_secs_f64());
    r
}

fn exec_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorType::Execution, e.to_string())
}

/// `GET|POST /api/v1/series`.
pub(super) async fn series(State(st): State<Arc<ApiState>>, p: Params) -> Result<ApiOk, ApiError> {
    let raw = p.all("match[]");
    if raw.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit = parse_limit(&p)?;
    let start = parse_time_param(&p, "start", MIN_TIME)?;
    let end = parse_time_param(&p, "end", MAX_TIME)?;
    let sets = parse_matchers(&raw).map_err(|e| ApiError::invalid_param(e, "match[]"))?;
    let (found, truncated) = blocking(&st, "series", move |st| {
        let q = st
            .queryable
            .querier(start, end)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let hints = SelectHints {
            start,
            end,
            func: Some("series".into()),
            ..Default::default()
        };
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        for ms in &sets {
            for s in q.select(true, Some(&hints), ms) {
                let s = s.map_err(|e| ApiError::internal(e.to_string()))?;
                all.insert(s.labels().clone());
                // One set is sorted: stop once past the limit.
                if sets.len() == 1 && limit > 0 && all.len() > limit {
                    break;
                }
            }
        }
        let mut v: Vec<Labels> = all.into_iter().collect();
        let truncated = limit > 0 && v.len() > limit;
        if truncated {
            v.truncate(limit);
        }
        Ok((v, truncated))
    })
    .await?;
    let mut out = String::from("[");
    for (i, l) in found.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::write_labels(&mut out, l);
    }
    out.push(']');
    Ok(ApiOk {
        data: out,
        warnings: if truncated {
            vec![TRUNCATED.into()]
        } else {
            vec![]
        },
        infos: vec![],
    })
}

fn string_list(mut v: Vec<String>, limit: usize) -> Result<ApiOk, ApiError> {
    let mut warnings = vec![];
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        warnings.push(TRUNCATED.to_string());
    }
    let mut ok = ApiOk::of(&v)?;
    ok.warnings = warnings;
    Ok(ok)
}

/// `GET|POST /api/v1/labels`.
pub(super) async fn labels(State(st): State<Arc<ApiState>>, p: Params) -> Result<ApiOk, ApiError> {
    let limit = parse_limit(&p)?;
    let start = parse_time_param(&p, "start", MIN_TIME)?;
    let end = parse_time_param(&p, "end", MAX_TIME)?;
    let sets = parse_matchers(&p.all("match[]")).map_err(ApiError::bad_data)?;
    let names = blocking(&st, "labels", move |st| {
        let q = st.queryable.querier(start, end).map_err(exec_err)?;
        if sets.is_empty() {
            return q.label_names(&[]).map_err(exec_err);
        }
        let mut all = BTreeSet::new();
        for ms in &sets {
            all.extend(q.label_names(ms).map_err(exec_err)?);
        }
        Ok(all.into_iter().collect::<Vec<_>>())
    })
    .await?;
    string_list(names, limit)
}

/// Prometheus's `model.UnescapeName` for the `U__` value-encoding escaping of UTF-8 names:
/// `_` ends or starts an escape, `__` is `_`, `_<hex>_` is the code point. Invalid escapes
/// leave the name unchanged.
pub fn unescape_name(name: &str) -> String {
    let Some(esc) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let b = esc.as_bytes();
    let mut out = String::with_capacity(esc.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'_' {
            // Copy one whole UTF-8 character.
            let ch_len = esc[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&esc[i..i + ch_len]);
            i += ch_len;
            continue;
        }
        i += 1;
        if i >= b.len() {
            return name.to_string();
        }
        if b[i] == b'_' {
            out.push('_');
            i += 1;
            continue;
        }
        let mut v: u32 = 0;
        let mut digits = 0;
        loop {
            if i >= b.len() || digits >= 6 {
                return name.to_string();
            }
            if b[i] == b'_' {
                match char::from_u32(v) {
                    Some(c) => out.push(c),
                    None => return name.to_string(),
                }
                i += 1;
                break;
            }
            let Some(d) = (b[i] as char).to_digit(16) else {
                return name.to_string();
            };
            v = v * 16 + d;
            digits += 1;
            i += 1;
        }
    }
    out
}

/// `GET /api/v1/label/{name}/values`.
pub(super) async fn label_values(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<ApiOk, ApiError> {
    let name = unescape_name(&name);
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let limit = parse_limit(&p)?;
    let start = parse_time_param(&p, "start", MIN_TIME)?;
    let end = parse_time_param(&p, "end", MAX_TIME)?;
    let sets = parse_matchers(&p.all("match[]")).map_err(ApiError::bad_data)?;
    let values = blocking(&st, "label_values", move |st| {
        let q = st.queryable.querier(start, end).map_err(exec_err)?;
        if sets.is_empty() {
            return q.label_values(&name, &[]).map_err(exec_err);
        }
        let mut all = BTreeSet::new();
        for ms in &sets {
            all.extend(q.label_values(&name, ms).map_err(exec_err)?);
        }
        Ok(all.into_iter().collect::<Vec<_>>())
    })
    .await?;
    string_list(values, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape() {
        assert_eq!(unescape_name("job"), "job");
        assert_eq!(unescape_name("U__foo_2e_bar"), "foo.bar");
        assert_eq!(unescape_name("U__a__b"), "a_b");
        assert_eq!(unescape_name("U__smile_1f600_"), "smile\u{1f600}");
        assert_eq!(unescape_name("U__bad_zz_"), "U__bad_zz_");
        assert_eq!(unescape_name("U__open_2e"), "U__open_2e");
    }

    #[test]
    fn matchers() {
        assert!(parse_matchers(&["up"]).is_ok());
        assert_eq!(
            parse_matchers(&["{job=~\".*\"}"]).unwrap_err(),
            "match[] must contain at least one non-empty matcher"
        );
        assert!(parse_matchers(&["up{"]).is_err());
    }
}
