//! From discovered target groups to scrape targets, as Prometheus's `PopulateLabels`.
//!
//! For each address of a [`TargetGroup`] the discovered labels are the group's labels, then
//! `__address__`, then — unless already set — `job`, `__scrape_interval__`,
//! `__scrape_timeout__`, `__metrics_path__`, `__scheme__`, the three histogram flags
//! Prometheus 3 exposes, and `__param_<name>` (first value of each configured param). Then the
//! job's `relabel_configs` run. A target is dropped when relabeling drops it; it is an error
//! when `__address__` ends up empty or contains `/`, or when `__scrape_interval__` /
//! `__scrape_timeout__` do not parse, are zero or timeout > interval. Finally `__meta_*` labels
//! are removed and `instance` defaults to `__address__`. Prometheus 3 adds no default port.
//!
//! The scrape URL is `__scheme__://__address____metrics_path__?params`, where the job's params
//! are overridden (first value) or extended by `__param_*` labels.

use strata_tsdb::labels::Labels;

use crate::config::{Duration, ScrapeConfig};
use crate::discovery::TargetGroup;
use crate::error::{Error, Result};
use crate::relabel::{process_builder, LabelBuilder};

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_LABEL_PREFIX: &str = "__param_";
pub const META_LABEL_PREFIX: &str = "__meta_";
pub const RESERVED_LABEL_PREFIX: &str = "__";
pub const JOB_LABEL: &str = "job";
pub const INSTANCE_LABEL: &str = "instance";
pub const CONVERT_CLASSIC_HISTOGRAMS_TO_NHCB_LABEL: &str = "__convert_classic_histograms_to_nhcb__";
pub const ALWAYS_SCRAPE_CLASSIC_HISTOGRAMS_LABEL: &str = "__always_scrape_classic_histograms__";
pub const SCRAPE_NATIVE_HISTOGRAMS_LABEL: &str = "__scrape_native_histograms__";

/// A target to scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The labels attached to every scraped series (no `__`-prefixed labels), as
    /// `/api/v1/targets` shows them under `labels`.
    pub labels: Labels,
    /// All labels after relabeling, including `__address__`, `__scheme__`, `__metrics_path__`,
    /// `__param_*` and other internal labels (Prometheus's `Target.labels`).
    pub internal_labels: Labels,
    /// The labels before relabeling (`discoveredLabels` in the API).
    pub discovered_labels: Labels,
    /// The URL to scrape.
    pub url: String,
    /// Effective scrape interval (`__scrape_interval__` after relabeling).
    pub interval: Duration,
    /// Effective scrape timeout (`__scrape_timeout__` after relabeling).
    pub timeout: Duration,
    /// The job (scrape pool) the target belongs to.
    pub scrape_pool: String,
}

/// What became of one discovered address.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetOutcome {
    /// To be scraped.
    Active(Target),
    /// Dropped by relabeling; `discovered` is what `/api/v1/targets` lists under
    /// `droppedTargets`.
    Dropped { discovered: Labels },
}

/// Prometheus's `PopulateDiscoveredLabels`: the labels of `address` in `group` before
/// relabeling.
pub fn discovered_labels(cfg: &ScrapeConfig, group: &TargetGroup, address: &str) -> Labels {
    discovered_builder(cfg, group, address).labels()
}

fn discovered_builder(cfg: &ScrapeConfig, group: &TargetGroup, address: &str) -> LabelBuilder {
    let mut b = LabelBuilder::new(Labels::empty());
    b.set(ADDRESS_LABEL, address);
    for (k, v) in &group.labels {
        if k != ADDRESS_LABEL {
            b.set(k, v);
        }
    }
    let interval = cfg.scrape_interval.to_string();
    let timeout = cfg.scrape_timeout.to_string();
    let defaults = [
        (JOB_LABEL, cfg.job_name.as_str()),
        (SCRAPE_INTERVAL_LABEL, interval.as_str()),
        (SCRAPE_TIMEOUT_LABEL, timeout.as_str()),
        (METRICS_PATH_LABEL, cfg.metrics_path.as_str()),
        (SCHEME_LABEL, cfg.scheme.as_str()),
        (
            CONVERT_CLASSIC_HISTOGRAMS_TO_NHCB_LABEL,
            bool_str(cfg.convert_classic_histograms_to_nhcb),
        ),
        (
            ALWAYS_SCRAPE_CLASSIC_HISTOGRAMS_LABEL,
            bool_str(cfg.always_scrape_classic_histograms),
        ),
        (
            SCRAPE_NATIVE_HISTOGRAMS_LABEL,
            bool_str(cfg.scrape_native_histograms),
        ),
    ];
    for (name, value) in defaults {
        if b.get(name).is_empty() {
            b.set(name, value);
        }
    }
    for (k, vs) in &cfg.params {
        let name = format!("{PARAM_LABEL_PREFIX}{k}");
        if let Some(first) = vs.first() {
            if b.get(&name).is_empty() {
                b.set(&name, first);
            }
        }
    }
    b
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Prometheus's `PopulateLabels` for one address of `group`, plus the URL, interval and timeout
/// the scrape loop needs. Errors are Prometheus's reasons for discarding a target.
pub fn populate_target(
    cfg: &ScrapeConfig,
    group: &TargetGroup,
    address: &str,
) -> Result<TargetOutcome> {
    let mut b = discovered_builder(cfg, group, address);
    let discovered = b.labels();
    if !process_builder(&mut b, &cfg.relabel_configs) {
        return Ok(TargetOutcome::Dropped { discovered });
    }
    let invalid = |m: String| Error::InvalidTarget(m);
    let addr = b.get(ADDRESS_LABEL).to_string();
    if addr.is_empty() {
        return Err(invalid("no address".into()));
    }
    if addr.contains('/') {
        return Err(invalid(format!("{addr:?} is not a valid hostname")));
    }
    let interval_s = b.get(SCRAPE_INTERVAL_LABEL).to_string();
    let interval = Duration::parse(&interval_s)
        .map_err(|e| invalid(format!("error parsing scrape interval: {e}")))?;
    if interval.is_zero() {
        return Err(invalid("scrape interval cannot be 0".into()));
    }
    let timeout_s = b.get(SCRAPE_TIMEOUT_LABEL).to_string();
    let timeout = Duration::parse(&timeout_s)
        .map_err(|e| invalid(format!("error parsing scrape timeout: {e}")))?;
    if timeout.is_zero() {
        return Err(invalid("scrape timeout cannot be 0".into()));
    }
    if timeout > interval {
        return Err(invalid(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout_s:?} > {interval_s:?})"
        )));
    }
    for (name, desc) in [
        (
            CONVERT_CLASSIC_HISTOGRAMS_TO_NHCB_LABEL,
            "convert classic histograms to nhcb",
        ),
        (
            ALWAYS_SCRAPE_CLASSIC_HISTOGRAMS_LABEL,
            "always scrape classic histograms",
        ),
        (SCRAPE_NATIVE_HISTOGRAMS_LABEL, "scrape native histograms"),
    ] {
        let v = b.get(name);
        if !v.is_empty() && parse_bool(v).is_none() {
            return Err(invalid(format!(
                "error parsing {desc}: invalid syntax {v:?}"
            )));
        }
    }
    for (name, _) in b.snapshot() {
        if name.starts_with(META_LABEL_PREFIX) {
            b.del(&name);
        }
    }
    if b.get(INSTANCE_LABEL).is_empty() {
        b.set(INSTANCE_LABEL, &addr);
    }
    let internal = b.labels();
    let visible = Labels::new(
        internal
            .iter()
            .filter(|l| !l.name.starts_with(RESERVED_LABEL_PREFIX))
            .cloned()
            .collect(),
    );
    let url = target_url(cfg, &internal);
    Ok(TargetOutcome::Active(Target {
        labels: visible,
        internal_labels: internal,
        discovered_labels: discovered,
        url,
        interval,
        timeout,
        scrape_pool: cfg.job_name.clone(),
    }))
}

/// Prometheus's `TargetsFromGroup`: every address of `group`, in order. Targets that fail are
/// reported as errors naming their index and the group's source.
pub fn targets_from_group(
    cfg: &ScrapeConfig,
    group: &TargetGroup,
) -> (Vec<TargetOutcome>, Vec<Error>) {
    let mut out = Vec::with_capacity(group.targets.len());
    let mut errors = Vec::new();
    for (i, addr) in group.targets.iter().enumerate() {
        match populate_target(cfg, group, addr) {
            Ok(t) => out.push(t),
            Err(e) => {
                let msg = match e {
                    Error::InvalidTarget(m) => m,
                    other => other.to_string(),
                };
                errors.push(Error::InvalidTarget(format!(
                    "instance {i} in group {}: {msg}",
                    group.source
                )))
            }
        }
    }
    (out, errors)
}

/// `scheme://address/path?query` from a target's internal labels.
fn target_url(cfg: &ScrapeConfig, labels: &Labels) -> String {
    let mut params: std::collections::BTreeMap<String, Vec<String>> = cfg.params.clone();
    for l in labels.iter() {
        if let Some(k) = l.name.strip_prefix(PARAM_LABEL_PREFIX) {
            let e = params.entry(k.to_string()).or_default();
            if e.is_empty() {
                e.push(l.value.to_string());
            } else {
                e[0] = l.value.to_string();
            }
        }
    }
    let scheme = labels.get_or_empty(SCHEME_LABEL);
    let host = labels.get_or_empty(ADDRESS_LABEL);
    let path = labels.get_or_empty(METRICS_PATH_LABEL);
    let mut url = format!("{scheme}://{host}");
    if !path.is_empty() && !path.starts_with('/') {
        url.push('/');
    }
    url.push_str(&escape_path(path));
    let mut first = true;
    for (k, vs) in &params {
        for v in vs {
            url.push(if first { '?' } else { '&' });
            first = false;
            url.push_str(&query_escape(k));
            url.push('=');
            url.push_str(&query_escape(v));
        }
    }
    url
}

/// Go's `url.PathEscape`-like escaping used by `URL.String()` for paths.
fn escape_path(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'~'
                    | b'$'
                    | b'&'
                    | b'+'
                    | b','
                    | b'/'
                    | b':'
                    | b';'
                    | b'='
                    | b'@'
            )
        {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Go's `url.QueryEscape`: space as `+`, unreserved kept, the rest percent-encoded.
fn query_escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            s.push(b as char);
        } else if b == b' ' {
            s.push('+');
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests;
