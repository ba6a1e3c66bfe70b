//! Retrying requests that failed for a transient reason: every bucket Strata builds is wrapped
//! in a [`RetryingStore`], so one lost request does not fail an upload, a compaction pass or a
//! query. The cloud clients retry HTTP failures themselves; this layer covers every backend
//! and every kind of failure the store reports as an error, with exponential backoff.
//!
//! Answers that are not failures — `NotFound`, `AlreadyExists`, `Precondition`,
//! `NotModified`, `NotImplemented` — are returned at once. A delete that is retried and then
//! finds nothing counts as done (the first attempt took effect). Listings are read whole
//! before they are returned, so a listing that fails part-way is retried from the start.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOpts,
    PutOptions, PutPayload, PutResult,
};

/// How persistently requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// A store that retries its inner store's failed requests (see the module documentation).
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        RetryingStore { inner, policy }
    }

    /// `inner` with the default policy, as a bucket.
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(RetryingStore::new(inner, RetryPolicy::default()))
    }

    /// Runs `op` until it succeeds, gives a definite answer, or the attempts run out.
    /// `retried_not_found` is the answer to a `NotFound` after a failed attempt.
    async fn run<T, F, Fut>(
        &self,
        what: &str,
        key: &Key,
        retried_not_found: Option<T>,
        mut op: F,
    ) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut wait = self.policy.backoff;
        let mut attempt = 1;
        let mut found_answer = retried_not_found;
        loop {
            match op().await {
                Err(object_store::Error::NotFound { path, source }) => {
                    return match (attempt > 1, found_answer.take()) {
                        (true, Some(v)) => Ok(v),
                        _ => Err(object_store::Error::NotFound { path, source }),
                    };
                }
                Err(e) if retryable(&e) && attempt < self.policy.attempts => {
                    tracing::debug!(op = what, key = %key, attempt, error = %e, "object store request failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.policy.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Whether an error may go away by asking again.
fn retryable(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::NotImplemented
            | object_store::Error::NotSupported { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}

impl fmt::Debug for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryingStore({}, {:?})", self.inner, self.policy)
    }
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Key,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.run("put", location, None, || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOpts,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.run("multipart upload", location, None, || {
            self.inner.put_multipart_opts(location, opts.clone())
        })
        .await
    }

    async fn get_opts(
        &self,
        location: &Key,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        // The body is read here, so a failure while streaming it is retried too.
        let (meta, attributes, range, bytes) = self
            .run("get", location, None, || async {
                let r = self.inner.get_opts(location, options.clone()).await?;
                let (meta, attributes, range) =
                    (r.meta.clone(), r.attributes.clone(), r.range.clone());
                let bytes = r.bytes().await?;
                Ok((meta, attributes, range, bytes))
            })
            .await?;
        Ok(GetResult {
            payload: object_store::GetResultPayload::Stream(
                futures::stream::once(async move { Ok(bytes) }).boxed(),
            ),
            meta,
            range,
            attributes,
        })
    }

    async fn get_range(&self, location: &Key, range: Range<usize>) -> object_store::Result<Bytes> {
        self.run("get range", location, None, || {
            self.inner.get_range(location, range.clone())
        })
        .await
    }

    async fn get_ranges(
        &self,
        location: &Key,
        ranges: &[Range<usize>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.run("get ranges", location, None, || {
            self.inner.get_ranges(location, ranges)
        })
        .await
    }

    async fn head(&self, location: &Key) -> object_store::Result<ObjectMeta> {
        self.run("head", location, None, || self.inner.head(location))
            .await
    }

    async fn delete(&self, location: &Key) -> object_store::Result<()> {
        self.run("delete", location, Some(()), || self.inner.delete(location))
            .await
    }

    fn list(&self, prefix: Option<&Key>) -> BoxStream<'_, object_store::Result<ObjectMeta>> {
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let key = prefix.clone().unwrap_or_default();
            self.run("list", &key, None, || {
                self.inner.list(prefix.as_ref()).try_collect::<Vec<_>>()
            })
            .await
        })
        .map_ok(|v| futures::stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        let key = prefix.cloned().unwrap_or_default();
        self.run("list", &key, None, || {
            self.inner.list_with_delimiter(prefix)
        })
        .await
    }

    async fn copy(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.run("copy", to, None, || self.inner.copy(from, to))
            .await
    }

    async fn copy_if_not_exists(&self, from: &Key, to: &Key) -> object_store::Result<()> {
        self.run("copy", to, None, || self.inner.copy_if_not_exists(from, to))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faulty::{FaultConfig, FaultyStore};
    use object_store::memory::InMemory;

    fn stores(fail_rate: f64) -> (Arc<FaultyStore>, RetryingStore) {
        let faulty = Arc::new(FaultyStore::new(
            Arc::new(InMemory::new()),
            FaultConfig {
                seed: 3,
                fail_rate,
                write_fail_rate: fail_rate,
                ..FaultConfig::default()
            },
        ));
        let policy = RetryPolicy {
            attempts: 8,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        };
        (faulty.clone(), RetryingStore::new(faulty, policy))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_away() {
        let (faulty, store) = stores(0.3);
        for i in 0..100 {
            let key = Key::from(format!("k/{i}"));
            store
                .put(&key, Bytes::from(vec![i as u8; 10]).into())
                .await
                .unwrap();
            let got = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(got, Bytes::from(vec![i as u8; 10]));
            assert_eq!(store.get_range(&key, 2..4).await.unwrap().len(), 2);
        }
        let listed: Vec<ObjectMeta> = store
            .list(Some(&Key::from("k")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 100);
        for i in 0..100 {
            store.delete(&Key::from(format!("k/{i}"))).await.unwrap();
        }
        assert!(faulty.stats().failed() > 50, "{:?}", faulty.stats());
        faulty.set_enabled(false);
        let left: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn definite_answers_are_not_retried() {
        let (faulty, store) = stores(0.0);
        let err = store.get(&Key::from("missing")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        // A delete of something absent is NotFound on the first attempt.
        let err = store.delete(&Key::from("missing")).await;
        assert!(
            matches!(err, Ok(()) | Err(object_store::Error::NotFound { .. })),
            "{err:?}"
        );
        assert_eq!(faulty.stats().failed(), 0);
        // When every request fails, the error comes back after the attempts.
        let (_, always) = stores(1.0);
        assert!(always
            .put(&Key::from("x"), Bytes::from_static(b"1").into())
            .await
            .is_err());
    }
}
