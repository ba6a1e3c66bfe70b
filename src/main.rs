//! The `strata` binary: command-line parsing and the wiring of roles (server, offline TSDB
//! tools). No storage or query logic lives here; it calls into the workspace crates.

mod agent;
mod compact_cmd;
mod gofmt;
mod promql_cmd;
mod rwbench;
mod serve;
mod tsdb_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Strata: a Prometheus-compatible metrics database with long-term storage.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter directive.
    #[arg(long = "log.level", global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: storage with WAL, background compaction and retention, HTTP endpoints.
    Serve(Box<serve::ServeArgs>),
    /// Agent mode: scrape into a local WAL and forward over remote write (no queries).
    Agent(agent::AgentArgs),
    /// PromQL tools: run `.test` scripts, evaluate a query against a data directory.
    Promql {
        #[command(subcommand)]
        command: PromqlCommand,
    },
    /// Load generators for benchmarking a server.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Offline tools for a data directory or block directory.
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
    /// Compact, downsample and apply retention to the blocks of an object-storage bucket.
    Compact(compact_cmd::CompactArgs),
    /// Tools for an object-storage bucket: ls, inspect, verify, mark, cleanup.
    Bucket {
        #[command(subcommand)]
        command: compact_cmd::BucketCommand,
    },
    /// Apply per-resolution retention to a bucket once (marks blocks for deletion).
    Retention(compact_cmd::RetentionCmdArgs),
}

#[derive(Subcommand, Debug)]
enum PromqlCommand {
    /// Run Prometheus `.test` scripts; prints per-file counts and ends with `N passed, M failed`.
    Test {
        /// Script files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How many failures to show per file.
        #[arg(long, default_value_t = 5)]
        show: usize,
    },
    /// Evaluate an expression against a data directory; prints `/api/v1/query` JSON.
    Query {
        /// Data directory.
        #[arg(long = "storage.tsdb.path", default_value = "./data")]
        path: PathBuf,
        /// Evaluation time (RFC 3339 or Unix seconds) of an instant query; default now.
        #[arg(long)]
        time: Option<String>,
        /// Start of a range query.
        #[arg(long)]
        start: Option<String>,
        /// End of a range query.
        #[arg(long)]
        end: Option<String>,
        /// Step of a range query (duration or seconds).
        #[arg(long)]
        step: Option<String>,
        /// Lookback delta (default 5m).
        #[arg(long = "lookback-delta")]
        lookback_delta: Option<String>,
        /// The PromQL expression.
        expr: String,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Send remote-write requests as fast as the receiver accepts them; prints samples/s,
    /// errors and latency percentiles.
    #[command(name = "remote-write")]
    RemoteWrite(rwbench::RemoteWriteArgs),
}

#[derive(Subcommand, Debug)]
enum TsdbCommand {
    /// Statistics of the blocks in a data directory: series, samples, chunks, cardinality.
    Analyze {
        /// Data directory.
        dir: PathBuf,
        /// Analyze only this block (ULID); default: every block.
        #[arg(long)]
        block: Option<String>,
        /// How many entries to show in each top list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print every sample as `promtool tsdb dump` does: `{labels} value timestamp`.
    Dump {
        /// Data directory.
        dir: PathBuf,
        /// Series selector, e.g. `{__name__=~"node_.*"}`.
        #[arg(long = "match", default_value = "{__name__=~\"(?s:.*)\"}")]
        matcher: String,
        /// Minimum timestamp (ms).
        #[arg(long = "min-time", default_value_t = i64::MIN, allow_hyphen_values = true)]
        min_time: i64,
        /// Maximum timestamp (ms).
        #[arg(long = "max-time", default_value_t = i64::MAX, allow_hyphen_values = true)]
        max_time: i64,
    },
    /// Write blocks from a file of samples (like promtool's command of the same name).
    #[command(name = "create-blocks-from")]
    CreateBlocksFrom {
        #[command(subcommand)]
        source: CreateFrom,
    },
    /// Test helper (crash-safety tests): appends deterministic samples (value = timestamp) and
    /// prints `committed <ts>` after every successful commit.
    #[command(name = "append-test", hide = true)]
    AppendTest(tsdb_cmd::AppendTestArgs),
}

#[derive(Subcommand, Debug)]
enum CreateFrom {
    /// From an OpenMetrics text file whose samples all carry timestamps.
    Openmetrics {
        /// Input file.
        input: PathBuf,
        /// Output directory (created if needed).
        outdir: PathBuf,
        /// Maximum block duration, e.g. 2h (rounded down to Prometheus's block ranges).
        #[arg(long = "max-block-duration", default_value = "2h")]
        max_block_duration: String,
        /// Chunk-cutting rule: `prometheus3` (default; also caps chunks near 1 KiB) or
        /// `prometheus2` (byte-identical to promtool 2.x's blocks for any input).
        #[arg(long = "chunk-cutting", default_value = "prometheus3")]
        chunk_cutting: String,
        /// Do not print the summary of created blocks.
        #[arg(long)]
        quiet: bool,
    },
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    // Die quietly on a closed pipe (`strata tsdb dump … | head`), like other Unix tools.
    // SAFETY: setting a signal disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_tracing(&cli.log_level);
    let res = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Agent(args) => agent::run(args),
        Command::Promql { command } => match command {
            PromqlCommand::Test { files, show } => match promql_cmd::test(&files, show) {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => Err(e),
            },
            PromqlCommand::Query {
                path,
                time,
                start,
                end,
                step,
                lookback_delta,
                expr,
            } => promql_cmd::query(promql_cmd::QueryArgs {
                dir: &path,
                expr: &expr,
                time: time.as_deref(),
                start: start.as_deref(),
                end: end.as_deref(),
                step: step.as_deref(),
                lookback: lookback_delta.as_deref(),
            }),
        },
        Command::Bench {
            command: BenchCommand::RemoteWrite(args),
        } => rwbench::remote_write(&args),
        Command::Tsdb { command } => match command {
            TsdbCommand::Analyze { dir, block, limit } => {
                tsdb_cmd::analyze(&dir, block.as_deref(), limit)
            }
            TsdbCommand::Dump {
                dir,
                matcher,
                min_time,
                max_time,
            } => tsdb_cmd::dump(&dir, &matcher, min_time, max_time),
            TsdbCommand::AppendTest(args) => tsdb_cmd::append_test(&args),
            TsdbCommand::CreateBlocksFrom {
                source:
                    CreateFrom::Openmetrics {
                        input,
                        outdir,
                        max_block_duration,
                        chunk_cutting,
                        quiet,
                    },
            } => tsdb_cmd::create_blocks_from_openmetrics(
                &input,
                &outdir,
                &max_block_duration,
                &chunk_cutting,
                quiet,
            ),
        },
        Command::Compact(args) => compact_cmd::compact(args),
        Command::Bucket { command } => match compact_cmd::bucket(command) {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => Err(e),
        },
        Command::Retention(args) => compact_cmd::retention(args),
    };
    if let Err(e) = res {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
