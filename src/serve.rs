//! `strata serve`: opens the data directory (WAL replay, blocks), runs background compaction
//! and retention, and serves HTTP. The remote-write receiver and the query API are wired here
//! as they land; today the server answers the health and readiness endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use strata_tsdb::db::{Db, DbOptions};

use crate::tsdb_cmd::parse_duration_ms;

/// Flags of `strata serve`, named as Prometheus names them.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    listen: String,
    /// Data directory.
    #[arg(long = "storage.tsdb.path", default_value = "./data")]
    path: PathBuf,
    /// How long to keep data, e.g. 15d. 0 disables time retention.
    #[arg(long = "storage.tsdb.retention.time", default_value = "15d")]
    retention_time: String,
    /// Maximum bytes of blocks to keep (e.g. 512MB, 10GB). 0 disables size retention.
    #[arg(long = "storage.tsdb.retention.size", default_value = "0")]
    retention_size: String,
    /// How far behind the newest sample out-of-order samples are accepted.
    #[arg(long = "storage.tsdb.out-of-order-time-window", default_value = "0s")]
    ooo_window: String,
}

/// Parses a byte size such as `512MB`, `10GB`, `1TiB` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let s = s.trim();
    let idx = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(idx);
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        "TB" | "TIB" => 1 << 40,
        "PB" | "PIB" => 1 << 50,
        "EB" | "EIB" => 1 << 60,
        other => anyhow::bail!("invalid size {s:?}: unknown unit {other:?}"),
    };
    Ok((n * mult as f64) as u64)
}

pub fn run(args: ServeArgs) -> Result<()> {
    let opts = DbOptions {
        retention_time: if args.retention_time == "0" {
            0
        } else {
            parse_duration_ms(&args.retention_time).context("--storage.tsdb.retention.time")?
        },
        retention_size: parse_bytes(&args.retention_size)
            .context("--storage.tsdb.retention.size")?,
        ooo_window: parse_duration_ms(&args.ooo_window)
            .context("--storage.tsdb.out-of-order-time-window")?,
        ..Default::default()
    };
    let db = Db::open(&args.path, opts)
        .with_context(|| format!("opening data directory {}", args.path.display()))?;
    for b in db.broken_blocks() {
        tracing::error!(block = %b.dir.display(), error = %b.error, "block skipped");
    }
    tracing::info!(
        path = %args.path.display(),
        series = db.head().num_series(),
        blocks = db.blocks().len(),
        "storage ready"
    );
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--web.listen-address {:?}", args.listen))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let res = rt.block_on(serve_http(addr, db.clone()));
    db.close().context("closing storage")?;
    res
}

async fn serve_http(addr: SocketAddr, db: Arc<Db>) -> Result<()> {
    let app = Router::new()
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }))
        .with_state(db);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server")?;
    tracing::info!("shutting down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
