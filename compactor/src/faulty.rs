//! An object store that misbehaves on purpose, for tests and benches of everything that
//! talks to buckets: it wraps a real store and, drawing from a seeded generator, fails a share
//! of requests and stalls another share before passing them on. A failed write is sometimes
//! failed *after* it took effect (the request reached the store, the answer was lost), the
//! case that tests idempotency.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOpts,
    PutOptions, PutPayload, PutResult,
};
use parking_lot::Mutex;

/// How often requests misbehave.
#[derive(Debug, Clone, Copy)]
pub struct FaultConfig {
    /// Share of requests that fail (0..1). Half of the failed writes and deletes fail after
    /// taking effect.
    pub fail_ratio: f64,
    /// Share of requests delayed by `stall` before they run.
    pub stall_ratio: f64,
    pub stall: Duration,
    pub seed: u64,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    FailBefore,
    FailAfter,
    Stall,
}

/// The misbehaving store (see the module documentation).
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    cfg: FaultConfig,
    rng: Mutex<u64>,
    enabled: AtomicBool,
    failures: AtomicU64,
    stalls: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, cfg: FaultConfig) -> Self {
        FaultyStore {
            inner,
            cfg,
            rng: Mutex::new(cfg.seed | 1),
            enabled: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
        }
    }

    /// Turns the faults on or off (off: a plain pass-through).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Requests failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Requests stalled so far.
    pub fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// A uniform draw in [0, 1) (xorshift64*).
    fn draw(&self) -> f64 {
        let mut s = self.rng.lock();
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fault(&self, write: bool) -> Fault {
        if !self.enabled.load(Ordering::Relaxed) {
            return Fault::None;
        }
        let x = self.draw();
        let f = self.cfg.fail_ratio;
        if x < f {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if write && x < f / 2.0 {
                Fault::FailAfter
            } else {
                Fault::FailBefore
            }
        } else if x < f + self.cfg.stall_ratio {
            self.stalls.fetch_add(1, Ordering::Relaxed);
            Fault::Stall
        } else {
            Fault::None
        }
    }

    fn error(what: &str, key: &Key) -> object_store::Error {
        object_store::Error::Generic {
            store: "faulty",
            source: format!("injected failure: {what} {key}").into(),
        }
    }

    /// Applies `f` to a request: fails it, stalls it, or passes it on.
    async fn around<T, F>(
        &self,
        write: bool,
        what: &str,
        key: &Key,
        run: F,
    ) -> object_store::Result<T>
    where
        F: std::future::Future<Output = object_store::Result<T>>,
    {
        match self.fault(write) {
            Fault::FailBefore => Err(Self::error(what, key)),
            Fault::FailAfter => {
                run.await?;
                Err(Self::error(what, key))
            }
            Fault::Stall => {
                tokio::time::sleep(self.cfg.stall).await;
                run.await
            }
            Fault::None => run.await,
        }
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner.to_string())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Key,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.around(
            true,
            "put",
            location,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOpts,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.around(
            false,
            "multipart upload",
            location,
            self.inner.put_multipart_opts(location, opts),
        )
        .await
    }

    async fn get_opts(
        &self,
        location: &Key,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.around(
            false,
            "get",
            location,
            self.inner.get_opts(location, options),
        )
        .await
    }

    async fn get_range(&self, location: &Key, range: Range<usize>) -> object_store::Result<Bytes> {
        self.around(
            false,
            "get range",
            location,
            self.inner.get_range(location, range),
        )
        .await
    }

    async fn get_ranges(
        &self,
        location: &Key,
        ranges: &[Range<usize>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.around(
            false,
            "get ranges",
            location,
            self.inner.get_ranges(location, ranges),
        )
        .await
    }

    async fn head(&self, location: &Key) -> object_store::Result<ObjectMeta> {
        self.around(false, "head", location, self.inner.head(location))
            .await
    }

    async fn delete(&self, location: &Key) -> object_store::Result<()> {
        self.around(true, "delete", location, self.inner.delete(location))
            .await
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'_, object_store::Result<ObjectMeta>> {
        match self.fault(false) {
            Fault::FailBefore | Fault::FailAfter => {
                let key = prefix.cloned().unwrap_or_default();
                futures::stream::once(async move { Err(Self::error("list", &key)) }).boxed()
            }
            Fault::Stall => {
                let stall = self.cfg.stall;
                let inner = self.inner.list(prefix);
                futures::stream::once(tokio::time::sleep(stall))
                    .flat_map(move |_| futures::stream::empty())
                    .chain(inner)
                    .boxed()
            }
            Fault::None => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        let key = prefix.cloned().unwrap_or_default();
        self.around(false, "list", &key, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.around(true, "copy", to, self.inner.copy(from, to))
            .await
    }

    async fn copy_if_not_exists(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.around(true, "copy", to, self.inner.copy_if_not_exists(from, to))
            .await
    }
}

#[cfg(test)]
mod tests;
