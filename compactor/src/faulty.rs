//! A fault-injecting object store, for tests and benchmarks: [`FaultyStore`] wraps any
//! [`ObjectStore`] and, driven by a seeded RNG, fails a configurable fraction of requests with
//! `object_store::Error::Generic` (reads and writes at their own rates) and stalls another fraction for a configurable delay.
//!
//! Every request kind is affected: `put`/`put_opts`, `put_multipart(_opts)` (at creation),
//! `get`/`get_opts`, `get_range(s)`, `head`, `delete`, `list` (the stream fails at once or after
//! a few entries), `list_with_offset`, `list_with_delimiter`, `copy`, `rename` and their
//! `_if_not_exists` forms. Mutating requests (puts, deletes, copies, renames) may fail *after*
//! the wrapped store carried them out ([`FaultConfig::fail_after_effect`]): the request
//! succeeded but the client saw an error, the case that tests idempotency.
//!
//! Not production code: nothing in Strata builds one outside tests and benchmarks.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOpts,
    PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

/// What to inject.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// RNG seed: the same seed and the same sequence of requests give the same faults.
    pub seed: u64,
    /// Fraction of reading requests (get, head, list...) (0..=1) that fail.
    pub fail_rate: f64,
    /// Fraction of mutating requests (put, delete, copy, rename) (0..=1) that fail.
    pub write_fail_rate: f64,
    /// Fraction (0..=1) of the failing *mutating* requests that fail after the wrapped store
    /// carried them out (the write happened; the client sees an error).
    pub fail_after_effect: f64,
    /// Fraction of requests (0..=1) delayed by `stall` before they run.
    pub stall_rate: f64,
    /// How long a stalled request waits.
    pub stall: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 1,
            fail_rate: 0.0,
            write_fail_rate: 0.0,
            fail_after_effect: 0.5,
            stall_rate: 0.0,
            stall: Duration::from_millis(10),
        }
    }
}

/// Counters of what was injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests seen (while enabled or not).
    pub requests: u64,
    /// Requests failed before reaching the wrapped store.
    pub failed_before: u64,
    /// Mutating requests failed after the wrapped store carried them out.
    pub failed_after: u64,
    /// Requests stalled.
    pub stalled: u64,
}

impl FaultStats {
    /// All injected failures.
    pub fn failed(&self) -> u64 {
        self.failed_before + self.failed_after
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Before,
    After,
}

/// The fault-injecting wrapper; see the module documentation.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    cfg: FaultConfig,
    rng: Mutex<u64>,
    enabled: AtomicBool,
    requests: AtomicU64,
    failed_before: AtomicU64,
    failed_after: AtomicU64,
    stalled: AtomicU64,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

/// splitmix64: small, seedable, good enough for fault decisions.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn injected(op: &'static str, path: &str, after: bool) -> object_store::Error {
    let when = if after {
        "after the request took effect"
    } else {
        "before the request"
    };
    object_store::Error::Generic {
        store: "Faulty",
        source: format!("injected fault: {op} {path} failed {when}").into(),
    }
}

impl FaultyStore {
    /// Wraps `inner`; faults are enabled.
    pub fn new(inner: Arc<dyn ObjectStore>, cfg: FaultConfig) -> FaultyStore {
        FaultyStore {
            inner,
            rng: Mutex::new(cfg.seed),
            cfg,
            enabled: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            failed_before: AtomicU64::new(0),
            failed_after: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
        }
    }

    /// Turns fault injection on or off (off: a plain pass-through).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.requests.load(Ordering::Relaxed),
            failed_before: self.failed_before.load(Ordering::Relaxed),
            failed_after: self.failed_after.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
        }
    }

    /// A uniform number in [0, 1).
    fn unit(&self) -> f64 {
        let x = splitmix(&mut self.rng.lock());
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides the fate of one request: (stall?, fault).
    fn decide(&self, mutating: bool) -> (bool, Fault) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.enabled.load(Ordering::SeqCst) {
            return (false, Fault::None);
        }
        let stall = self.unit() < self.cfg.stall_rate;
        let rate = if mutating {
            self.cfg.write_fail_rate
        } else {
            self.cfg.fail_rate
        };
        let fail = self.unit() < rate;
        let after = self.unit() < self.cfg.fail_after_effect;
        let fault = match (fail, mutating && after) {
            (false, _) => Fault::None,
            (true, false) => Fault::Before,
            (true, true) => Fault::After,
        };
        (stall, fault)
    }

    /// Stalls if decided, then fails before the request if decided; returns the fault left.
    async fn enter(
        &self,
        op: &'static str,
        path: &Path,
        mutating: bool,
    ) -> object_store::Result<Fault> {
        let (stall, fault) = self.decide(mutating);
        if stall {
            self.stalled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.cfg.stall).await;
        }
        if fault == Fault::Before {
            self.failed_before.fetch_add(1, Ordering::Relaxed);
            return Err(injected(op, path.as_ref(), false));
        }
        Ok(fault)
    }

    /// The result of a mutating request that ran: replaced by an error when decided.
    fn leave<T>(
        &self,
        op: &'static str,
        path: &Path,
        fault: Fault,
        r: object_store::Result<T>,
    ) -> object_store::Result<T> {
        if fault == Fault::After && r.is_ok() {
            self.failed_after.fetch_add(1, Ordering::Relaxed);
            return Err(injected(op, path.as_ref(), true));
        }
        r
    }

    /// A listing stream with the decided faults: a stall before the first entry, a failure
    /// at once or after a few entries.
    fn faulty_list<'a>(
        &'a self,
        path: &Path,
        inner: BoxStream<'a, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'a, object_store::Result<ObjectMeta>> {
        let (stall, fault) = self.decide(false);
        let stall_for = self.cfg.stall;
        let take = (self.unit() * 4.0) as usize;
        if stall {
            self.stalled.fetch_add(1, Ordering::Relaxed);
        }
        let inner = if fault == Fault::None {
            inner
        } else {
            self.failed_before.fetch_add(1, Ordering::Relaxed);
            let err = injected("list", path.as_ref(), false);
            inner
                .take(take)
                .chain(stream::once(async { Err(err) }))
                .boxed()
        };
        if stall {
            stream::once(async move {
                tokio::time::sleep(stall_for).await;
                inner
            })
            .flatten()
            .boxed()
        } else {
            inner
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put(&self, location: &Path, payload: PutPayload) -> object_store::Result<PutResult> {
        let f = self.enter("put", location, true).await?;
        let r = self.inner.put(location, payload).await;
        self.leave("put", location, f, r)
    }

    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let f = self.enter("put", location, true).await?;
        let r = self.inner.put_opts(location, payload, opts).await;
        self.leave("put", location, f, r)
    }

    async fn put_multipart(
        &self,
        location: &Path,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.enter("put_multipart", location, false).await?;
        self.inner.put_multipart(location).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOpts,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.enter("put_multipart", location, false).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get(&self, location: &Path) -> object_store::Result<GetResult> {
        self.enter("get", location, false).await?;
        self.inner.get(location).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.enter("get", location, false).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_range(&self, location: &Path, range: Range<usize>) -> object_store::Result<Bytes> {
        self.enter("get_range", location, false).await?;
        self.inner.get_range(location, range).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<usize>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.enter("get_ranges", location, false).await?;
        self.inner.get_ranges(location, ranges).await
    }

    async fn head(&self, location: &Path) -> object_store::Result<ObjectMeta> {
        self.enter("head", location, false).await?;
        self.inner.head(location).await
    }

    async fn delete(&self, location: &Path) -> object_store::Result<()> {
        let f = self.enter("delete", location, true).await?;
        let r = self.inner.delete(location).await;
        self.leave("delete", location, f, r)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'_, object_store::Result<ObjectMeta>> {
        let p = prefix.cloned().unwrap_or_default();
        self.faulty_list(&p, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'_, object_store::Result<ObjectMeta>> {
        let p = prefix.cloned().unwrap_or_default();
        self.faulty_list(&p, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let p = prefix.cloned().unwrap_or_default();
        self.enter("list_with_delimiter", &p, false).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        let f = self.enter("copy", to, true).await?;
        let r = self.inner.copy(from, to).await;
        self.leave("copy", to, f, r)
    }

    async fn rename(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        let f = self.enter("rename", to, true).await?;
        let r = self.inner.rename(from, to).await;
        self.leave("rename", to, f, r)
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        let f = self.enter("copy_if_not_exists", to, true).await?;
        let r = self.inner.copy_if_not_exists(from, to).await;
        self.leave("copy_if_not_exists", to, f, r)
    }

    async fn rename_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
        let f = self.enter("rename_if_not_exists", to, true).await?;
        let r = self.inner.rename_if_not_exists(from, to).await;
        self.leave("rename_if_not_exists", to, f, r)
    }
}

#[cfg(test)]
mod tests;
