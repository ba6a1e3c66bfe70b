//! Target discovery: `static_configs` and `file_sd_configs`.
//!
//! A [`TargetGroup`] is Prometheus's `targetgroup.Group`: addresses sharing labels, named by a
//! source (`"0"`, `"1"`... for static configs, `"<file>:<index>"` for file SD). File SD reads
//! JSON (`.json`) or YAML (`.yml`, `.yaml`) lists of `{targets: [...], labels: {...}}`; the last
//! path component of each configured file may be a glob (`*`, `?`). Every group from a file
//! gets the label `__meta_filepath` set to the file's path.
//!
//! [`spawn_file_sd_watcher`] keeps a `tokio::sync::watch` channel up to date: it polls file
//! modification times every second, re-reads everything every `refresh_interval`, keeps the
//! last good groups of a file that became unreadable or invalid (logging the error), and drops
//! the groups of files that disappeared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use crate::config::{FileSdConfig, ScrapeConfig, StaticConfig};
use crate::error::{Error, Result};

/// The label file SD adds to every group: the path of the file it came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// A group of targets sharing labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Identifies the group within its discovery mechanism.
    pub source: String,
    /// `host:port` addresses (become `__address__`).
    pub targets: Vec<String>,
    /// Labels shared by the targets, sorted by name.
    pub labels: Vec<(String, String)>,
}

/// The groups of a job's `static_configs`, sources `"0"`, `"1"`, ... in order.
pub fn static_groups(cfg: &ScrapeConfig) -> Vec<TargetGroup> {
    groups_from_static(&cfg.static_configs)
}

/// Groups for a list of static configs.
pub fn groups_from_static(cfgs: &[StaticConfig]) -> Vec<TargetGroup> {
    cfgs.iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            source: i.to_string(),
            targets: sc.targets.clone(),
            labels: sc
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// Reads one file SD file (format from its extension).
pub fn read_target_file(path: &Path) -> Result<Vec<TargetGroup>> {
    let err = |message: String| Error::Config {
        path: Some(path.to_path_buf()),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("reading: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let raw: Vec<Option<RawGroup>> = match ext.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
        "yml" | "yaml" => {
            if text.trim().is_empty() {
                Vec::new()
            } else {
                yaml_serde::from_str::<Option<Vec<Option<RawGroup>>>>(&text)
                    .map_err(|e| err(e.to_string()))?
                    .unwrap_or_default()
            }
        }
        other => return Err(err(format!("unsupported file extension {other:?}"))),
    };
    let filename = path.to_string_lossy().into_owned();
    let mut out = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let g = g.ok_or_else(|| err(format!("[{i}]: nil target group item found")))?;
        let mut labels = g.labels.unwrap_or_default();
        if let Some(name) = labels.keys().find(|k| k.is_empty()) {
            return Err(err(format!("[{i}]: {name:?} is not a valid label name")));
        }
        labels.insert(FILEPATH_LABEL.to_string(), filename.clone());
        out.push(TargetGroup {
            source: format!("{filename}:{i}"),
            targets: g.targets.unwrap_or_default(),
            labels: labels.into_iter().collect(),
        });
    }
    Ok(out)
}

/// Reads every file matching `cfg.files` once. Errors for unreadable or invalid files are
/// returned beside the groups of the good ones.
pub fn read_file_sd(cfg: &FileSdConfig) -> (Vec<TargetGroup>, Vec<Error>) {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for file in list_files(cfg) {
        match read_target_file(&file) {
            Ok(g) => groups.extend(g),
            Err(e) => errors.push(e),
        }
    }
    (groups, errors)
}

fn list_files(cfg: &FileSdConfig) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = cfg.files.iter().flat_map(|p| glob(p)).collect();
    files.sort();
    files.dedup();
    files
}

/// Files matching `pattern`, whose last component may contain `*` (any run of characters) and
/// `?` (one character); sorted. A pattern without wildcards yields itself when it exists.
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            wildcard_match(name, &n).then(|| {
                pattern
                    .parent()
                    .map(|p| p.join(&n))
                    .unwrap_or_else(|| PathBuf::from(&n))
            })
        })
        .collect();
    out.sort();
    out
}

/// `*` matches any (possibly empty) run of characters, `?` exactly one.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What the watcher knows about one file.
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    groups: Vec<TargetGroup>,
}

/// How often the watcher checks modification times.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs file SD for `cfg`, publishing all current groups on `tx` (first right away, then on
/// every change). Stops when every receiver of `tx` is gone or when the returned handle is
/// aborted.
pub fn spawn_file_sd_watcher(
    cfg: FileSdConfig,
    tx: tokio::sync::watch::Sender<Vec<TargetGroup>>,
) -> tokio::task::JoinHandle<()> {
    spawn_file_sd_watcher_every(cfg, tx, POLL_INTERVAL)
}

/// [`spawn_file_sd_watcher`] with a chosen polling period.
pub fn spawn_file_sd_watcher_every(
    cfg: FileSdConfig,
    tx: tokio::sync::watch::Sender<Vec<TargetGroup>>,
    poll: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut files: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        let refresh = cfg.refresh_interval.as_std().max(poll);
        let mut last_full = tokio::time::Instant::now();
        let mut first = true;
        loop {
            let full = first || last_full.elapsed() >= refresh;
            if full {
                last_full = tokio::time::Instant::now();
            }
            let cfg2 = cfg.clone();
            let prev: BTreeMap<PathBuf, Option<(SystemTime, u64)>> =
                files.iter().map(|(k, v)| (k.clone(), v.stamp)).collect();
            // File system work happens off the async threads.
            let scan = tokio::task::spawn_blocking(move || scan(&cfg2, &prev, full)).await;
            let Ok(updates) = scan else {
                return;
            };
            let changed = apply(&mut files, updates);
            if changed || first {
                let all: Vec<TargetGroup> = files.values().flat_map(|f| f.groups.clone()).collect();
                if tx.send(all).is_err() {
                    return;
                }
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = tx.closed() => return,
            }
        }
    })
}

/// The result of one scan: the current file list and, for files that need it, a fresh read.
struct Scan {
    present: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
    reads: BTreeMap<PathBuf, Result<Vec<TargetGroup>>>,
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let md = std::fs::metadata(p).ok()?;
    Some((md.modified().ok()?, md.len()))
}

fn scan(
    cfg: &FileSdConfig,
    prev: &BTreeMap<PathBuf, Option<(SystemTime, u64)>>,
    full: bool,
) -> Scan {
    let mut present = Vec::new();
    let mut reads = BTreeMap::new();
    for f in list_files(cfg) {
        let st = stamp(&f);
        let unchanged = prev.get(&f).is_some_and(|old| *old == st && st.is_some());
        if full || !unchanged {
            reads.insert(f.clone(), read_target_file(&f));
        }
        present.push((f, st));
    }
    Scan { present, reads }
}

/// Folds a scan into the state; true when the published groups change.
fn apply(files: &mut BTreeMap<PathBuf, FileState>, scan: Scan) -> bool {
    let mut changed = false;
    let present: BTreeMap<PathBuf, Option<(SystemTime, u64)>> = scan.present.into_iter().collect();
    let before = files.len();
    files.retain(|p, _| present.contains_key(p));
    changed |= files.len() != before;
    for (path, result) in scan.reads {
        let st = present.get(&path).copied().flatten();
        match result {
            Ok(groups) => {
                let entry = files.entry(path).or_insert(FileState {
                    stamp: None,
                    groups: Vec::new(),
                });
                if entry.groups != groups {
                    entry.groups = groups;
                    changed = true;
                }
                entry.stamp = st;
            }
            Err(e) => {
                tracing::warn!(error = %e, "file_sd: keeping the previous targets of an invalid file");
                let entry = files.entry(path).or_insert(FileState {
                    stamp: None,
                    groups: Vec::new(),
                });
                // Remember the stamp so that the broken version is not re-read every poll.
                entry.stamp = st;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests;
