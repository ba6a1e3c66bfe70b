//! `/api/v1/targets` and `/api/v1/scrape_pools`: the scrape targets of whatever scrapes into
//! this server (the scrape manager in `strata serve --config.file`, or the agent), seen
//! through [`TargetsSource`], rendered as Prometheus renders them (`activeTargets`,
//! `droppedTargets`, `droppedTargetCounts`, filtered by `state` and `scrapePool`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use strata_tsdb::Labels;

use super::json::format_rfc3339;
use super::Params;

/// Health of a target as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Down,
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// One scraped target.
#[derive(Debug, Clone)]
pub struct ActiveTarget {
    /// Labels before relabeling (including `__address__`, `__scheme__`, ...).
    pub discovered_labels: Labels,
    /// The target's labels after relabeling (those attached to its samples).
    pub labels: Labels,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub last_error: String,
    /// Start of the last scrape, ms since the epoch; `None` before the first.
    pub last_scrape_ms: Option<i64>,
    pub last_scrape_duration: Duration,
    pub health: Health,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
}

/// A discovered target that relabeling dropped.
#[derive(Debug, Clone)]
pub struct DroppedTarget {
    pub discovered_labels: Labels,
    pub scrape_pool: String,
}

/// Everything `/api/v1/targets` shows.
#[derive(Debug, Clone, Default)]
pub struct TargetsSnapshot {
    pub active: Vec<ActiveTarget>,
    pub dropped: Vec<DroppedTarget>,
    /// Dropped targets per pool, including ones not kept in `dropped`
    /// (`keep_dropped_targets`).
    pub dropped_counts: BTreeMap<String, u64>,
    /// Every configured scrape pool (job), for `/api/v1/scrape_pools`.
    pub pools: Vec<String>,
}

/// Whatever scrapes into this server.
pub trait TargetsSource: Send + Sync {
    fn snapshot(&self) -> TargetsSnapshot;
}

fn labels_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for lb in l.iter() {
        m.insert(lb.name.to_string(), Value::String(lb.value.to_string()));
    }
    Value::Object(m)
}

/// A duration as Prometheus's `model.Duration` prints it (`1m`, `15s`, `1m30s`, `500ms`).
pub fn format_prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("y", 365 * 86_400_000u64),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// The `data` member of `/api/v1/targets` for `snap`, filtered by the request's `state`
/// (`active`, `dropped`, `any`; default any) and `scrapePool` parameters.
pub fn targets_data(snap: &TargetsSnapshot, p: &Params) -> Value {
    let state = p.get("state").unwrap_or("").to_ascii_lowercase();
    // As Prometheus: an unknown state shows neither list.
    let show_active = matches!(state.as_str(), "" | "any" | "active");
    let show_dropped = matches!(state.as_str(), "" | "any" | "dropped");
    let pool = p.get("scrapePool");
    let in_pool = |name: &str| pool.is_none_or(|p| p == name);
    let mut data = Map::new();
    if show_active {
        // Pools in name order, targets in the source's order within a pool.
        let mut active: Vec<&ActiveTarget> = snap
            .active
            .iter()
            .filter(|t| in_pool(&t.scrape_pool))
            .collect();
        active.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        let list: Vec<Value> = active
            .into_iter()
            .map(|t| {
                json!({
                    "discoveredLabels": labels_json(&t.discovered_labels),
                    "labels": labels_json(&t.labels),
                    "scrapePool": t.scrape_pool,
                    "scrapeUrl": t.scrape_url,
                    "globalUrl": t.scrape_url,
                    "lastError": t.last_error,
                    "lastScrape": t.last_scrape_ms.map_or_else(
                        || "0001-01-01T00:00:00Z".to_string(),
                        format_rfc3339,
                    ),
                    "lastScrapeDuration": t.last_scrape_duration.as_secs_f64(),
                    "health": t.health.as_str(),
                    "scrapeInterval": format_prom_duration(t.scrape_interval),
                    "scrapeTimeout": format_prom_duration(t.scrape_timeout),
                })
            })
            .collect();
        data.insert("activeTargets".into(), Value::Array(list));
    } else {
        data.insert("activeTargets".into(), Value::Array(vec![]));
    }
    if show_dropped {
        let mut dropped: Vec<&DroppedTarget> = snap
            .dropped
            .iter()
            .filter(|t| in_pool(&t.scrape_pool))
            .collect();
        dropped.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        let list: Vec<Value> = dropped
            .into_iter()
            .map(|t| {
                json!({
                    "discoveredLabels": labels_json(&t.discovered_labels),
                    "scrapePool": t.scrape_pool,
                })
            })
            .collect();
        data.insert("droppedTargets".into(), Value::Array(list));
        // Not filtered by pool, as in Prometheus.
        let counts: Map<String, Value> = snap
            .dropped_counts
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        data.insert("droppedTargetCounts".into(), Value::Object(counts));
    } else {
        data.insert("droppedTargets".into(), Value::Array(vec![]));
        data.insert("droppedTargetCounts".into(), Value::Null);
    }
    Value::Object(data)
}

/// The scrape service of `strata serve --config.file` and `strata agent`, as the API sees it.
impl TargetsSource for strata_ingest::scrape::ScrapeService {
    fn snapshot(&self) -> TargetsSnapshot {
        use strata_ingest::scrape::TargetHealth;
        let snap = self.targets();
        let ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0)
        };
        TargetsSnapshot {
            active: snap
                .active
                .into_iter()
                .map(|t| ActiveTarget {
                    discovered_labels: t.discovered_labels,
                    labels: t.labels,
                    scrape_pool: t.pool,
                    scrape_url: t.url,
                    last_error: t.status.last_error.unwrap_or_default(),
                    last_scrape_ms: t.status.last_scrape.map(ms),
                    last_scrape_duration: t.status.last_scrape_duration.unwrap_or_default(),
                    health: match t.status.health {
                        TargetHealth::Up => Health::Up,
                        TargetHealth::Down => Health::Down,
                        TargetHealth::Unknown => Health::Unknown,
                    },
                    scrape_interval: t.interval,
                    scrape_timeout: t.timeout,
                })
                .collect(),
            dropped: snap
                .dropped
                .into_iter()
                .map(|d| DroppedTarget {
                    discovered_labels: d.discovered_labels,
                    scrape_pool: d.pool,
                })
                .collect(),
            dropped_counts: self.dropped_counts(),
            pools: self.pools(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> TargetsSnapshot {
        TargetsSnapshot {
            active: vec![ActiveTarget {
                discovered_labels: Labels::from_pairs(&[
                    ("__address__", "127.0.0.1:9100"),
                    ("job", "node"),
                ]),
                labels: Labels::from_pairs(&[("instance", "127.0.0.1:9100"), ("job", "node")]),
                scrape_pool: "node".into(),
                scrape_url: "http://127.0.0.1:9100/metrics".into(),
                last_error: String::new(),
                last_scrape_ms: Some(1_700_000_000_123),
                last_scrape_duration: Duration::from_millis(12),
                health: Health::Up,
                scrape_interval: Duration::from_secs(90),
                scrape_timeout: Duration::from_secs(10),
            }],
            dropped: vec![DroppedTarget {
                discovered_labels: Labels::from_pairs(&[("__address__", "x:1")]),
                scrape_pool: "other".into(),
            }],
            dropped_counts: [("other".to_string(), 1), ("node".to_string(), 0)]
                .into_iter()
                .collect(),
            pools: vec!["node".into(), "other".into()],
        }
    }

    fn params(p: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn renders_prometheus_shape() {
        let v = targets_data(&snap(), &params(&[]));
        let t = &v["activeTargets"][0];
        assert_eq!(t["health"], "up");
        assert_eq!(t["scrapeInterval"], "1m30s");
        assert_eq!(t["scrapeTimeout"], "10s");
        assert_eq!(t["lastScrapeDuration"], 0.012);
        assert_eq!(t["lastScrape"], "2023-11-14T22:13:20.123Z");
        assert_eq!(t["labels"]["instance"], "127.0.0.1:9100");
        assert_eq!(t["discoveredLabels"]["__address__"], "127.0.0.1:9100");
        assert_eq!(
            v["droppedTargets"][0]["discoveredLabels"]["__address__"],
            "x:1"
        );
        assert_eq!(v["droppedTargetCounts"]["other"], 1);
    }

    #[test]
    fn filters_by_state_and_pool() {
        let v = targets_data(&snap(), &params(&[("state", "active")]));
        assert_eq!(v["activeTargets"].as_array().unwrap().len(), 1);
        assert_eq!(v["droppedTargets"].as_array().unwrap().len(), 0);
        assert!(v["droppedTargetCounts"].is_null());
        let v = targets_data(&snap(), &params(&[("scrapePool", "other")]));
        assert_eq!(v["activeTargets"].as_array().unwrap().len(), 0);
        assert_eq!(v["droppedTargets"].as_array().unwrap().len(), 1);
        assert_eq!(v["droppedTargetCounts"]["node"], 0);
        let v = targets_data(&snap(), &params(&[("state", "bogus")]));
        assert_eq!(v["activeTargets"].as_array().unwrap().len(), 0);
        assert_eq!(v["droppedTargets"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(format_prom_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_prom_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_prom_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_prom_duration(Duration::ZERO), "0s");
    }
}
