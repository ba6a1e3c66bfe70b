//! `strata tsdb …`: offline tools over a data directory — `analyze`, `dump` (same output as
//! `promtool tsdb dump`), and `create-blocks-from openmetrics` (backfill, like promtool's).

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use strata_ingest::openmetrics::{Entry, OpenMetricsParser};
use strata_tsdb::db::{Db, DbOptions};
use strata_tsdb::head::{Head, HeadOptions, DEFAULT_BLOCK_RANGE};
use strata_tsdb::labels::{MatchType, Matcher};
use strata_tsdb::storage::{Appender, Queryable, SampleIterator};

use crate::gofmt::format_g;

/// Parses a series selector: `name`, `{matchers}` or `name{matchers}`.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mut out = Vec::new();
    if !name.trim().is_empty() {
        out.push(Matcher::equal("__name__", name.trim()));
    }
    if rest.is_empty() {
        return Ok(out);
    }
    let body = rest
        .strip_prefix('{')
        .and_then(|r| r.trim_end().strip_suffix('}'))
        .ok_or_else(|| anyhow!("selector {s:?}: unbalanced braces"))?;
    let b = body.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] as char).is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let lname = &body[start..i];
        if lname.is_empty() {
            bail!("selector {s:?}: expected label name at offset {start}");
        }
        skip_ws(&mut i);
        let op = if body[i..].starts_with("=~") {
            MatchType::Regexp
        } else if body[i..].starts_with("!~") {
            MatchType::NotRegexp
        } else if body[i..].starts_with("!=") {
            MatchType::NotEqual
        } else if body[i..].starts_with('=') {
            MatchType::Equal
        } else {
            bail!("selector {s:?}: expected a match operator at offset {i}");
        };
        i += if op == MatchType::Equal { 1 } else { 2 };
        skip_ws(&mut i);
        let quote = *b
            .get(i)
            .ok_or_else(|| anyhow!("selector {s:?}: expected a quoted value"))?;
        if quote != b'"' && quote != b'\'' && quote != b'`' {
            bail!("selector {s:?}: expected a quoted value at offset {i}");
        }
        i += 1;
        let mut val = String::new();
        let mut closed = false;
        let chars: Vec<char> = body[i..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            if c as u32 == quote as u32 {
                closed = true;
                j += 1;
                break;
            }
            if c == '\\' && quote != b'`' && j + 1 < chars.len() {
                j += 1;
                match chars[j] {
                    'n' => val.push('\n'),
                    't' => val.push('\t'),
                    '\\' => val.push('\\'),
                    '"' => val.push('"'),
                    '\'' => val.push('\''),
                    o => {
                        val.push('\\');
                        val.push(o)
                    }
                }
            } else {
                val.push(c);
            }
            j += 1;
        }
        if !closed {
            bail!("selector {s:?}: unterminated string");
        }
        i += chars[..j].iter().map(|c| c.len_utf8()).sum::<usize>();
        out.push(Matcher::new(op, lname, val)?);
        skip_ws(&mut i);
        if i < b.len() {
            if b[i] == b',' {
                i += 1;
            } else {
                bail!("selector {s:?}: expected ',' or '}}' at offset {i}");
            }
        }
    }
    if out.is_empty() {
        bail!("selector {s:?} matches nothing: give a metric name or a matcher");
    }
    Ok(out)
}

/// `strata tsdb dump`.
pub fn dump(dir: &Path, selector: &str, mint: i64, maxt: i64) -> Result<()> {
    let matchers = parse_selector(selector)?;
    let db = Db::open(
        dir,
        DbOptions {
            read_only: true,
            compaction_interval: None,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", dir.display()))?;
    for b in db.broken_blocks() {
        eprintln!("warning: skipping block {}: {}", b.dir.display(), b.error);
    }
    let q = db.querier(mint, maxt)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for s in q.select(true, None, &matchers) {
        let s = s?;
        let lbs = s.labels().to_string();
        let mut it = s.iterator();
        while it.next() {
            let (t, v) = it.at();
            writeln!(out, "{lbs} {} {t}", format_g(v))?;
        }
        if let Some(e) = it.err() {
            bail!("series {lbs}: {e}");
        }
    }
    out.flush()?;
    Ok(())
}

/// `strata tsdb analyze`.
pub fn analyze(dir: &Path, only: Option<&str>, limit: usize) -> Result<()> {
    let (blocks, broken) =
        strata_tsdb::db::load_blocks(dir).with_context(|| format!("reading {}", dir.display()))?;
    for b in &broken {
        println!("Broken block {}: {}", b.dir.display(), b.error);
    }
    let blocks: Vec<_> = blocks
        .into_iter()
        .filter(|b| only.is_none_or(|u| b.ulid().to_string() == u))
        .collect();
    if blocks.is_empty() {
        bail!("no blocks to analyze in {}", dir.display());
    }
    let (mut series, mut samples, mut chunks, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    for b in &blocks {
        let m = b.meta();
        series += m.stats.num_series;
        samples += m.stats.num_samples;
        chunks += m.stats.num_chunks;
        bytes += b.size();
    }
    println!("Blocks: {}", blocks.len());
    println!("Series (sum over blocks): {series}");
    println!("Samples: {samples}");
    println!("Chunks: {chunks}");
    println!("Bytes: {bytes}");
    if samples > 0 {
        println!("Bytes per sample: {:.3}", bytes as f64 / samples as f64);
    }
    for b in &blocks {
        let m = b.meta();
        let ix = b.index();
        println!();
        println!("Block ID: {}", m.ulid);
        println!(
            "Time range: {} .. {} (duration {})",
            m.min_time,
            m.max_time,
            fmt_duration(m.max_time - m.min_time)
        );
        println!(
            "Series: {}  Samples: {}  Chunks: {}  Level: {}  Size: {} bytes",
            m.stats.num_series,
            m.stats.num_samples,
            m.stats.num_chunks,
            m.compaction.level,
            b.size()
        );
        let names: Vec<String> = ix
            .label_names()
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect();
        println!("Label names: {}", names.len());
        let mut card: Vec<(usize, String)> = Vec::new();
        let mut pairs = 0usize;
        let mut entries = 0u64;
        for n in &names {
            let vals = ix.label_values(n)?;
            pairs += vals.len();
            for v in &vals {
                entries += ix.postings(n, v)?.len();
            }
            card.push((vals.len(), n.clone()));
        }
        println!("Postings (unique label pairs): {pairs}");
        println!("Postings entries (total label pairs): {entries}");
        card.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        println!();
        println!("Highest cardinality labels:");
        for (n, name) in card.iter().take(limit) {
            println!("{n} {name}");
        }
        let mut metrics: Vec<(u64, String)> = Vec::new();
        for v in ix.label_values("__name__")? {
            metrics.push((ix.postings("__name__", &v)?.len(), v));
        }
        metrics.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        println!();
        println!("Highest cardinality metric names:");
        for (n, name) in metrics.iter().take(limit) {
            println!("{n} {name}");
        }
    }
    Ok(())
}

fn fmt_duration(ms: i64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let msr = ms % 1000;
    if msr != 0 {
        format!("{h}h{m}m{sec}.{msr:03}s")
    } else {
        format!("{h}h{m}m{sec}s")
    }
}

/// Parses a Prometheus duration such as `2h`, `90m`, `1d12h`.
pub fn parse_duration_ms(s: &str) -> Result<i64> {
    Ok(strata_tsdb::duration::parse_duration_ms(s)?)
}

/// Prometheus's block duration for a requested maximum: the largest of 2h·3ⁿ not above it.
fn compatible_block_duration(max: i64) -> i64 {
    let ranges = strata_tsdb::compact::exponential_block_ranges(DEFAULT_BLOCK_RANGE, 10, 3);
    if max <= DEFAULT_BLOCK_RANGE {
        return DEFAULT_BLOCK_RANGE;
    }
    let mut best = ranges[ranges.len() - 1];
    for (i, v) in ranges.iter().enumerate() {
        if *v > max {
            best = ranges[i.saturating_sub(1)];
            break;
        }
    }
    best
}

/// `strata tsdb create-blocks-from openmetrics`.
pub fn create_blocks_from_openmetrics(
    input: &Path,
    outdir: &Path,
    max_block_duration: &str,
    cutting: &str,
    quiet: bool,
) -> Result<()> {
    let cut_policy = match cutting {
        "prometheus3" => strata_tsdb::chunkenc::CutPolicy::Prometheus3,
        "prometheus2" => strata_tsdb::chunkenc::CutPolicy::Prometheus2,
        o => bail!("--chunk-cutting {o:?}: expected prometheus3 or prometheus2"),
    };
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let block_duration = compatible_block_duration(parse_duration_ms(max_block_duration)?);

    // Pass 1: validate everything and find the time range, before writing anything.
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let mut total = 0u64;
    for e in OpenMetricsParser::new(&text) {
        let e = e.map_err(|e| anyhow!("{}: {e}", input.display()))?;
        if let Entry::Sample(s) = e {
            let Some(ts) = s.timestamp_ms else {
                bail!(
                    "{}: expected timestamp for series {}, got none",
                    input.display(),
                    s.to_labels()?
                );
            };
            mint = mint.min(ts);
            maxt = maxt.max(ts);
            total += 1;
        }
    }
    if total == 0 {
        bail!("{}: no samples", input.display());
    }
    std::fs::create_dir_all(outdir).with_context(|| format!("creating {}", outdir.display()))?;

    let pb = if std::io::stderr().is_terminal() && !quiet {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} samples ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };

    let mut written = Vec::new();
    let mut t = block_duration * mint.div_euclid(block_duration);
    let mut next_sample = i64::MAX;
    while t <= maxt {
        let upper = t + block_duration;
        if next_sample != i64::MAX && next_sample >= upper {
            t = upper;
            continue;
        }
        next_sample = i64::MAX;
        // Like promtool: a head with a chunk range of twice the block so that every sample of
        // the window is appendable; chunks are cut exactly as promtool cuts them.
        let head = Head::in_memory(HeadOptions {
            chunk_range: 2 * block_duration,
            cut_policy,
            ..Default::default()
        });
        let mut app = head.appender();
        let mut n = 0;
        for e in OpenMetricsParser::new(&text) {
            let Entry::Sample(s) = e.map_err(|e| anyhow!("{}: {e}", input.display()))? else {
                continue;
            };
            let ts = s.timestamp_ms.unwrap_or_default();
            if ts < t {
                continue;
            }
            if ts >= upper {
                next_sample = next_sample.min(ts);
                continue;
            }
            let labels = s.to_labels()?;
            app.append(&labels, ts, s.value)
                .with_context(|| format!("add sample {labels} @ {ts}"))?;
            n += 1;
            pb.inc(1);
            if n >= 5000 {
                app.commit()?;
                app = head.appender();
                n = 0;
            }
        }
        app.commit()?;
        if head.num_series() > 0 {
            let (hmin, hmax) = (head.min_time(), head.max_time());
            if let Some(meta) =
                strata_tsdb::compact::write_head_block(outdir, &head, hmin, hmax + 1)?
            {
                written.push(meta);
            }
        }
        t = upper;
    }
    pb.finish_and_clear();
    if !quiet {
        println!(
            "{:<26}  {:>14}  {:>14}  {:>12}  {:>10}  {:>10}  {:>10}",
            "BLOCK ULID", "MIN TIME", "MAX TIME", "DURATION", "SAMPLES", "CHUNKS", "SERIES"
        );
        for m in &written {
            println!(
                "{:<26}  {:>14}  {:>14}  {:>12}  {:>10}  {:>10}  {:>10}",
                m.ulid.to_string(),
                m.min_time,
                m.max_time,
                fmt_duration(m.max_time - m.min_time),
                m.stats.num_samples,
                m.stats.num_chunks,
                m.stats.num_series
            );
        }
    }
    Ok(())
}

/// Flags of the hidden `strata tsdb append-test` (used by the crash-safety tests).
#[derive(clap::Args, Debug)]
pub struct AppendTestArgs {
    /// Data directory.
    #[arg(long = "storage.tsdb.path")]
    pub path: std::path::PathBuf,
    /// Number of series (`crash_test{series="<i>"}`).
    #[arg(long, default_value_t = 20)]
    pub series: usize,
    /// First timestamp to append (ms).
    #[arg(long = "start-ts", allow_hyphen_values = true)]
    pub start_ts: i64,
    /// Milliseconds between timestamps.
    #[arg(long, default_value_t = 1000)]
    pub step: i64,
    /// Timestamps per commit (every series gets a sample at each).
    #[arg(long = "per-commit", default_value_t = 1)]
    pub per_commit: i64,
    /// Stop after this many commits.
    #[arg(long, default_value_t = u64::MAX)]
    pub commits: u64,
    /// WAL segment size in bytes (a multiple of 32 KiB).
    #[arg(long = "wal-segment-size", default_value_t = 32 * 1024)]
    pub wal_segment_size: usize,
    /// Block range in ms.
    #[arg(long = "block-range", default_value_t = DEFAULT_BLOCK_RANGE)]
    pub block_range: i64,
    /// Call `Db::compact` after every this many commits (0: never).
    #[arg(long = "compact-every", default_value_t = 0)]
    pub compact_every: u64,
}

/// `strata tsdb append-test`: opens the data directory without background compaction and
/// appends `value = timestamp` to every series, printing `committed <last ts>` after each
/// successful commit (stdout is flushed each time), so a test that kills this process at any
/// moment knows which samples must have survived.
pub fn append_test(a: &AppendTestArgs) -> Result<()> {
    use strata_tsdb::labels::Labels;
    if a.step <= 0 || a.per_commit <= 0 {
        bail!("--step and --per-commit must be positive");
    }
    let db = Db::open(
        &a.path,
        DbOptions {
            block_range: a.block_range,
            wal_segment_size: a.wal_segment_size,
            compaction_interval: None,
            retention_time: 0,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening {}", a.path.display()))?;
    let labels: Vec<Labels> = (0..a.series)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "crash_test".to_string()),
                ("series", i.to_string()),
            ])
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "opened")?;
    out.flush()?;
    let mut refs: Vec<Option<u64>> = vec![None; labels.len()];
    let mut t = a.start_ts;
    for n in 0..a.commits {
        let mut app = db.appender()?;
        for _ in 0..a.per_commit {
            for (i, l) in labels.iter().enumerate() {
                let r = match refs[i] {
                    Some(r) => app.append_ref(r, t, t as f64),
                    None => app.append(l, t, t as f64),
                }
                .with_context(|| format!("append {l} @ {t}"))?;
                refs[i] = Some(r);
            }
            t += a.step;
        }
        app.commit()?;
        writeln!(out, "committed {}", t - a.step)?;
        out.flush()?;
        if a.compact_every > 0 && (n + 1) % a.compact_every == 0 {
            db.compact()?;
            // Compaction may drop series from the head: look them up again.
            refs.iter_mut().for_each(|r| *r = None);
        }
    }
    db.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let m = parse_selector(r#"up{job="a", x=~"b|c",y!="",z!~'q'}"#).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[2].typ, MatchType::Regexp);
        assert!(parse_selector("{").is_err());
        assert!(parse_selector(r#"{a="b"#).is_err());
        assert!(parse_selector("{}").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("1d12h").unwrap(), 129_600_000);
        assert_eq!(parse_duration_ms("1500ms").unwrap(), 1500);
        assert!(parse_duration_ms("5").is_err());
        assert!(parse_duration_ms("x").is_err());
        assert_eq!(compatible_block_duration(7_200_000), 7_200_000);
        assert_eq!(compatible_block_duration(8 * 3_600_000), 6 * 3_600_000);
    }
}
