//! `strata compact`, `strata bucket ls|inspect|verify|mark|cleanup` and `strata retention`:
//! the command-line face of the long-term storage maintenance in `strata-compactor`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use strata_compactor::bucket::{self, Bucket};
use strata_compactor::compact::{self, CompactConfig, Progress, Summary};
use strata_compactor::planner;
use strata_compactor::retention::{self, Retention};

use crate::tsdb_cmd::parse_duration_ms;

/// The bucket to work on.
#[derive(Args, Debug, Clone)]
pub struct ObjstoreArgs {
    /// Object storage configuration file (Thanos's objstore YAML).
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// Object storage configuration as YAML text (instead of the file).
    #[arg(long = "objstore.config")]
    objstore_config: Option<String>,
}

/// Per-resolution retention flags.
#[derive(Args, Debug, Clone)]
pub struct RetentionArgs {
    /// How long to keep raw blocks (0d = forever).
    #[arg(long = "retention.resolution-raw", default_value = "0d")]
    raw: String,
    /// How long to keep 5m-downsampled blocks (0d = forever).
    #[arg(long = "retention.resolution-5m", default_value = "0d")]
    res_5m: String,
    /// How long to keep 1h-downsampled blocks (0d = forever).
    #[arg(long = "retention.resolution-1h", default_value = "0d")]
    res_1h: String,
}

impl RetentionArgs {
    fn parse(&self) -> Result<Retention> {
        Ok(Retention {
            raw: parse_duration_ms(&self.raw).context("--retention.resolution-raw")?,
            res_5m: parse_duration_ms(&self.res_5m).context("--retention.resolution-5m")?,
            res_1h: parse_duration_ms(&self.res_1h).context("--retention.resolution-1h")?,
        })
    }
}

/// `strata compact`.
#[derive(Args, Debug)]
pub struct CompactArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    /// Scratch directory for downloaded and produced blocks.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Keep running, one pass every --wait-interval (default: one pass, then exit).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    wait: bool,
    /// Time between passes with --wait.
    #[arg(long = "wait-interval", default_value = "5m")]
    wait_interval: String,
    #[command(flatten)]
    retention: RetentionArgs,
    /// External label identifying replicas; blocks differing only in it are merged and
    /// deduplicated (repeatable).
    #[arg(long = "deduplication.replica-label")]
    replica_labels: Vec<String>,
    /// How long a block marked for deletion stays before it is deleted.
    #[arg(long = "delete-delay", default_value = "48h")]
    delete_delay: String,
    /// Do not downsample.
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
    /// Compaction ranges, smallest first (the first is the uploaded block size); Thanos's
    /// 2h,8h,2d,14d by default. For tests with small blocks.
    #[arg(long = "compact.ranges", value_delimiter = ',', hide = true)]
    ranges: Vec<String>,
}

/// `strata retention`.
#[derive(Args, Debug)]
pub struct RetentionCmdArgs {
    #[command(flatten)]
    objstore: ObjstoreArgs,
    #[command(flatten)]
    retention: RetentionArgs,
}

/// `strata bucket ...`.
#[derive(Subcommand, Debug)]
pub enum BucketCommand {
    /// List the blocks of the bucket (one ULID a line; partial and corrupt ones annotated).
    Ls {
        #[command(flatten)]
        objstore: ObjstoreArgs,
    },
    /// A table of the blocks: time range, resolution, level, counts, size, labels, marks.
    Inspect {
        #[command(flatten)]
        objstore: ObjstoreArgs,
    },
    /// Download every block and check its index and chunks; report overlaps within groups.
    /// Exits 1 when anything is broken.
    Verify {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Scratch directory for downloads (default: a directory under the system temp dir).
        #[arg(long = "data-dir")]
        data_dir: Option<PathBuf>,
    },
    /// Put a marker on a block.
    Mark {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        /// Block ULID (repeatable).
        #[arg(long, required = true)]
        id: Vec<String>,
        /// deletion-mark.json or no-compact-mark.json.
        #[arg(long)]
        marker: String,
        /// Why.
        #[arg(long, default_value = "")]
        details: String,
    },
    /// Apply retention, delete blocks marked longer than --delete-delay, remove aborted
    /// partial uploads; once.
    Cleanup {
        #[command(flatten)]
        objstore: ObjstoreArgs,
        #[command(flatten)]
        retention: RetentionArgs,
        /// How long a block marked for deletion stays before it is deleted.
        #[arg(long = "delete-delay", default_value = "48h")]
        delete_delay: String,
    },
}

/// The bucket named by `--objstore.config-file` or `--objstore.config`, if either is given;
/// fields accepted but not implemented are logged, and the description (never secrets) too.
pub fn open_objstore(
    file: Option<&Path>,
    text: Option<&str>,
) -> Result<Option<(Bucket, strata_compactor::objstore::BucketDescription)>> {
    use strata_compactor::objstore;
    let opened = match (file, text) {
        (Some(_), Some(_)) => bail!("give --objstore.config-file or --objstore.config, not both"),
        (Some(p), None) => objstore::from_file(p).context("--objstore.config-file")?,
        (None, Some(t)) => objstore::from_yaml(t).context("--objstore.config")?,
        (None, None) => return Ok(None),
    };
    for f in &opened.1.ignored {
        tracing::warn!(field = %f, "objstore configuration: accepted but not implemented");
    }
    tracing::info!(bucket = %opened.1, "object storage");
    Ok(Some(opened))
}

fn open_bucket(a: &ObjstoreArgs) -> Result<Bucket> {
    let opened = open_objstore(
        a.objstore_config_file.as_deref(),
        a.objstore_config.as_deref(),
    )?;
    let (bucket, _) =
        opened.ok_or_else(|| anyhow!("--objstore.config-file or --objstore.config is required"))?;
    Ok(bucket)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")
}

/// Progress bars on a terminal, nothing otherwise.
struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    on: bool,
}

impl Bars {
    fn new() -> Self {
        Bars {
            bar: Mutex::new(None),
            on: std::io::stderr().is_terminal(),
        }
    }
    fn done(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        if !self.on {
            return;
        }
        self.done();
        let pb = ProgressBar::new(total);
        if let Ok(st) = ProgressStyle::with_template("{msg:20} [{bar:30}] {pos}/{len} {elapsed}") {
            pb.set_style(st.progress_chars("=> "));
        }
        pb.set_message(name.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(pb);
        }
    }
    fn step(&self, _msg: &str) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(1);
            }
        }
    }
}

fn print_summary(s: &Summary) {
    println!(
        "compactions: {} ({} blocks compacted), downsampled: {}, marked for deletion: {}, marked no-compact: {}, deleted: {}",
        s.compactions,
        s.blocks_compacted,
        s.blocks_downsampled,
        s.marked_for_deletion,
        s.marked_no_compact,
        s.deleted
    );
}

/// `strata compact`.
pub fn compact(a: CompactArgs) -> Result<()> {
    let bucket = open_bucket(&a.objstore)?;
    let ret = a.retention.parse()?;
    let delay = parse_duration_ms(&a.delete_delay).context("--delete-delay")?;
    let interval = parse_duration_ms(&a.wait_interval).context("--wait-interval")?;
    let mut cfg = CompactConfig::new(&a.data_dir);
    cfg.replica_labels = a.replica_labels.clone();
    cfg.downsampling = !a.downsampling_disable;
    if !a.ranges.is_empty() {
        cfg.ranges = a
            .ranges
            .iter()
            .map(|r| parse_duration_ms(r))
            .collect::<Result<_>>()
            .context("--compact.ranges")?;
    }
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("create {}", a.data_dir.display()))?;
    // The scratch directory is this compactor's alone.
    let _lock = strata_tsdb::db::lock_dir(&a.data_dir).with_context(|| {
        format!(
            "--data-dir {} is in use by another strata compact",
            a.data_dir.display()
        )
    })?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut total = Summary::default();
        loop {
            let bars = Bars::new();
            let pass = async {
                let mut s = compact::compact_pass(&bucket, &cfg, &bars).await?;
                s.add(
                    &retention::cleanup(&bucket, &ret, delay, retention::PARTIAL_UPLOAD_THRESHOLD)
                        .await?,
                );
                Ok::<_, strata_compactor::Error>(s)
            };
            let res = pass.await;
            bars.done();
            let s = match res {
                Ok(s) => s,
                // One pass: the error is the answer. Waiting: the next pass starts over (every
                // step is safe to repeat).
                Err(e) if !a.wait => return Err(e.into()),
                Err(e) => {
                    tracing::error!(error = %e, "compaction pass failed; retrying at the next pass");
                    Summary::default()
                }
            };
            total.add(&s);
            if !a.wait {
                break;
            }
            tracing::info!(?s, "compaction pass done");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(interval.max(1000) as u64)) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        print_summary(&total);
        Ok::<_, anyhow::Error>(())
    })
}

/// `strata retention`.
pub fn retention(a: RetentionCmdArgs) -> Result<()> {
    let bucket = open_bucket(&a.objstore)?;
    let ret = a.retention.parse()?;
    let now = compact::now_secs() * 1000;
    let marked = runtime()?.block_on(retention::apply_retention(&bucket, &ret, now))?;
    for id in &marked {
        println!("marked for deletion: {id}");
    }
    println!("{} blocks marked for deletion", marked.len());
    Ok(())
}

/// Go-like UTC time: `2006-01-02T15:04:05Z`.
fn fmt_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn fmt_dur(ms: i64) -> String {
    let h = ms / 3_600_000;
    if h >= 24 && h % 24 == 0 {
        format!("{}d", h / 24)
    } else if ms % 3_600_000 == 0 {
        format!("{h}h")
    } else {
        format!("{}m", ms / 60_000)
    }
}

fn fmt_res(r: i64) -> String {
    if r == 0 {
        "0s".into()
    } else {
        fmt_dur(r)
    }
}

fn fmt_bytes(b: u64) -> String {
    let mut v = b as f64;
    for u in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return if u == "B" {
                format!("{b}B")
            } else {
                format!("{v:.1}{u}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1}TiB")
}

/// `strata bucket ...`.
pub fn bucket(cmd: BucketCommand) -> Result<bool> {
    let rt = runtime()?;
    match cmd {
        BucketCommand::Ls { objstore } => {
            let b = open_bucket(&objstore)?;
            let l = rt.block_on(bucket::list_metas(&b))?;
            for m in &l.blocks {
                println!("{}", m.ulid);
            }
            for id in &l.partial {
                println!("{id} (partial upload: no meta.json)");
            }
            for (id, e) in &l.corrupt {
                println!("{id} (corrupt: {e})");
            }
            Ok(true)
        }
        BucketCommand::Inspect { objstore } => {
            let b = open_bucket(&objstore)?;
            rt.block_on(inspect(&b))?;
            Ok(true)
        }
        BucketCommand::Verify { objstore, data_dir } => {
            let b = open_bucket(&objstore)?;
            let dir = data_dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("strata-verify-{}", std::process::id()))
            });
            let ok = rt.block_on(verify(&b, &dir));
            let _ = std::fs::remove_dir_all(&dir);
            ok
        }
        BucketCommand::Mark {
            objstore,
            id,
            marker,
            details,
        } => {
            let b = open_bucket(&objstore)?;
            let ids = id
                .iter()
                .map(|s| bucket::parse_block_id(s))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rt.block_on(async {
                for id in &ids {
                    if bucket::read_meta(&b, id).await?.is_none() {
                        bail!("block {id} not found in the bucket");
                    }
                    let wrote = match marker.as_str() {
                        bucket::DELETION_MARK_FILE => {
                            compact::mark_for_deletion(&b, id, &details).await?
                        }
                        bucket::NO_COMPACT_MARK_FILE => {
                            compact::mark_no_compact(&b, id, "manual", &details).await?
                        }
                        other => bail!(
                            "unknown marker {other:?}: use {} or {}",
                            bucket::DELETION_MARK_FILE,
                            bucket::NO_COMPACT_MARK_FILE
                        ),
                    };
                    if wrote {
                        println!("marked {id} with {marker}");
                    } else {
                        println!("{id} already has {marker}");
                    }
                }
                Ok(true)
            })
        }
        BucketCommand::Cleanup {
            objstore,
            retention: r,
            delete_delay,
        } => {
            let b = open_bucket(&objstore)?;
            let ret = r.parse()?;
            let delay = parse_duration_ms(&delete_delay).context("--delete-delay")?;
            let s = rt.block_on(retention::cleanup(
                &b,
                &ret,
                delay,
                retention::PARTIAL_UPLOAD_THRESHOLD,
            ))?;
            print_summary(&s);
            Ok(true)
        }
    }
}

async fn inspect(b: &Bucket) -> Result<()> {
    let st = compact::sync(b).await?;
    let mut rows: Vec<Vec<String>> = vec![[
        "ULID",
        "FROM",
        "UNTIL",
        "RANGE",
        "RESOLUTION",
        "LEVEL",
        "SERIES",
        "SAMPLES",
        "CHUNKS",
        "SIZE",
        "LABELS",
        "MARKS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    let mut metas = st.listing.blocks.clone();
    metas.sort_by_key(|m| (m.min_time, m.ulid));
    for m in &metas {
        let size: u64 = bucket::block_objects(b, &m.ulid)
            .await?
            .iter()
            .map(|(_, s)| s)
            .sum();
        let labels: Vec<String> = planner::external_labels(m)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut marks = Vec::new();
        if st.deletion_marks.contains_key(&m.ulid) {
            marks.push("deletion");
        }
        if st.no_compact.contains(&m.ulid) {
            marks.push("no-compact");
        }
        rows.push(vec![
            m.ulid.to_string(),
            fmt_time(m.min_time),
            fmt_time(m.max_time),
            fmt_dur(m.max_time - m.min_time),
            fmt_res(planner::resolution(m)),
            m.compaction.level.to_string(),
            m.stats.num_series.to_string(),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            fmt_bytes(size),
            labels.join(","),
            marks.join(","),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    for id in &st.listing.partial {
        println!("{id}: partial upload (no meta.json)");
    }
    for (id, e) in &st.listing.corrupt {
        println!("{id}: corrupt: {e}");
    }
    Ok(())
}

async fn verify(b: &Bucket, dir: &Path) -> Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let st = compact::sync(b).await?;
    let mut ok = true;
    for (id, e) in &st.listing.corrupt {
        println!("BROKEN {id}: {e}");
        ok = false;
    }
    let bars = Bars::new();
    bars.stage("verifying", st.listing.blocks.len() as u64);
    for m in &st.listing.blocks {
        let res = async {
            let d = bucket::download_block(b, &m.ulid, dir).await?;
            let r = strata_compactor::verify::verify_block(&d);
            let _ = std::fs::remove_dir_all(&d);
            r
        }
        .await;
        match res {
            Ok(c) => println!(
                "ok {}: {} series, {} chunks, {} samples",
                m.ulid, c.series, c.chunks, c.samples
            ),
            Err(e) => {
                ok = false;
                println!("BROKEN {}: {e}", m.ulid);
            }
        }
        bars.step("");
    }
    bars.done();
    let live = st.live_blocks();
    for (group, a, c) in strata_compactor::verify::find_overlaps(&live) {
        ok = false;
        println!("OVERLAP in group {group}: {a} and {c}");
    }
    for id in strata_compactor::verify::redundant_blocks(&live) {
        println!("redundant {id}: another block holds its sources; the next compactor pass marks it for deletion");
    }
    println!(
        "{}: {} blocks checked",
        if ok { "ok" } else { "problems found" },
        st.listing.blocks.len()
    );
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_dur(8 * 3_600_000), "8h");
        assert_eq!(fmt_dur(48 * 3_600_000), "2d");
        assert_eq!(fmt_res(300_000), "5m");
        assert_eq!(fmt_bytes(512), "512B");
        assert_eq!(fmt_bytes(2048), "2.0KiB");
    }
}
