//! End-to-end tests of agent mode against an in-process remote-write receiver (axum on
//! 127.0.0.1:0) that decodes every request with [`crate::remote::decode_write`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use strata_tsdb::storage::Appender;
use strata_tsdb::Labels;

use super::*;
use crate::remote::Protocol;

type Responder = Box<dyn FnMut(usize) -> (u16, Option<String>) + Send>;

struct RecvState {
    requests: AtomicUsize,
    /// Samples of requests answered 2xx, in arrival order.
    samples: Mutex<Vec<(Labels, i64, f64)>>,
    headers: Mutex<Vec<HeaderMap>>,
    times: Mutex<Vec<Instant>>,
    respond: Mutex<Responder>,
}

struct Receiver {
    addr: SocketAddr,
    state: Arc<RecvState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecvState {
    fn new(respond: Responder) -> Arc<Self> {
        Arc::new(RecvState {
            requests: AtomicUsize::new(0),
            samples: Mutex::new(Vec::new()),
            headers: Mutex::new(Vec::new()),
            times: Mutex::new(Vec::new()),
            respond: Mutex::new(respond),
        })
    }

    /// Counts a request and decodes it; returns its number (from 0) too.
    fn receive(&self, headers: &HeaderMap, body: &[u8]) -> (usize, crate::remote::WriteBatch) {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        self.times.lock().push(Instant::now());
        self.headers.lock().push(headers.clone());
        crate::remote::decode_write(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            body,
            &Default::default(),
        )
        .map(|b| (n, b))
        .expect("decodable request")
    }

    /// Records the samples of an accepted request.
    fn accept(&self, batch: crate::remote::WriteBatch) {
        let mut s = self.samples.lock();
        for series in batch.series {
            for (t, v) in series.samples {
                s.push((series.labels.clone(), t, v));
            }
        }
    }
}

async fn handle(State(st): State<Arc<RecvState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (n, batch) = st.receive(&headers, &body);
    let (status, _) = (st.respond.lock())(n);
    if (200..300).contains(&status) {
        st.accept(batch);
    }
    StatusCode::from_u16(status).unwrap()
}

async fn handle_with_headers(
    state: State<Arc<RecvState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let st = state.0.clone();
    let n = st.requests.load(Ordering::SeqCst);
    let retry_after = (st.respond.lock())(n).1;
    let code = handle(state, headers, body).await;
    let mut h = HeaderMap::new();
    if let Some(ra) = retry_after {
        h.insert("retry-after", ra.parse().unwrap());
    }
    (code, h)
}

async fn receiver_on(listener: tokio::net::TcpListener, respond: Responder) -> Receiver {
    let addr = listener.local_addr().unwrap();
    let state = RecvState::new(respond);
    let app = axum::Router::new()
        .route("/write", axum::routing::post(handle_with_headers))
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver { addr, state, task }
}

async fn receiver(respond: Responder) -> Receiver {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    receiver_on(l, respond).await
}

fn ok() -> Responder {
    Box::new(|_| (204, None))
}

impl Receiver {
    fn url(&self) -> String {
        format!("http://{}/write", self.addr)
    }
    fn samples(&self) -> Vec<(Labels, i64, f64)> {
        self.state.samples.lock().clone()
    }
    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn settings(name: &str, url: &str) -> QueueSettings {
    let mut s = QueueSettings::new(name, url, reqwest::Client::new());
    s.capacity = 100;
    s.max_shards = 4;
    s.min_shards = 2;
    s.max_samples_per_send = 50;
    s.batch_send_deadline = Duration::from_millis(20);
    s.min_backoff = Duration::from_millis(10);
    s.max_backoff = Duration::from_millis(80);
    s.remote_timeout = Duration::from_secs(2);
    s
}

fn opts() -> AgentOptions {
    AgentOptions {
        segment_size: 64 * 1024,
        max_wal_age: Duration::ZERO,
        min_wal_age: Duration::ZERO,
        wal_compression: true,
        sync_interval: Duration::from_millis(20),
        truncate_frequency: Duration::ZERO,
    }
}

fn series(i: usize) -> Labels {
    Labels::from_pairs(&[("__name__", "test_metric"), ("instance", &format!("i{i}"))])
}

/// Appends `per` samples to each of `n` series at timestamps `from..from+per`, committing
/// every 10 timestamps. Values encode (series, t).
fn append(storage: &AgentStorage, n: usize, from: i64, per: i64) {
    let mut app = storage.appender();
    for t in from..from + per {
        for i in 0..n {
            app.append(&series(i), t, (i as i64 * 1_000_000 + t) as f64)
                .unwrap();
        }
        if (t - from) % 10 == 9 {
            app.commit().unwrap();
        }
    }
    app.commit().unwrap();
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every `(series, t)` for `n` series and `from..to`, exactly once, in order per series.
fn assert_exactly_once_in_order(got: &[(Labels, i64, f64)], n: usize, from: i64, to: i64) {
    let mut per: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (l, t, v) in got {
        let inst = l.get("instance").unwrap().to_string();
        let i: i64 = inst[1..].parse().unwrap();
        assert_eq!(*v, (i * 1_000_000 + t) as f64);
        per.entry(inst).or_default().push(*t);
    }
    assert_eq!(per.len(), n, "series received");
    for (s, ts) in per {
        assert_eq!(ts, (from..to).collect::<Vec<_>>(), "samples of {s}");
    }
}

/// Every `(series, t)` at least once.
fn assert_all_present(got: &[(Labels, i64, f64)], n: usize, from: i64, to: i64) {
    let set: BTreeSet<(String, i64)> = got
        .iter()
        .map(|(l, t, _)| (l.get("instance").unwrap().to_string(), *t))
        .collect();
    for i in 0..n {
        for t in from..to {
            assert!(set.contains(&(format!("i{i}"), t)), "missing i{i} @ {t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_once_in_order_with_v1_and_v2() {
    let dir = tempfile::tempdir().unwrap();
    let r1 = receiver(ok()).await;
    let r2 = receiver(ok()).await;
    let mut s1 = settings("v1", &r1.url());
    s1.headers = vec![("Authorization".into(), "Bearer secret".into())];
    let mut s2 = settings("v2", &r2.url());
    s2.protocol = Protocol::V2;
    let agent = Agent::start(dir.path(), opts(), vec![s1, s2]).unwrap();
    append(&agent.storage(), 5, 1000, 100);
    wait_until("delivery", Duration::from_secs(5), || {
        r1.samples().len() >= 500 && r2.samples().len() >= 500
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_exactly_once_in_order(&r1.samples(), 5, 1000, 1100);
    assert_exactly_once_in_order(&r2.samples(), 5, 1000, 1100);

    let h1 = r1.state.headers.lock()[0].clone();
    assert_eq!(h1["content-encoding"], "snappy");
    assert_eq!(h1["content-type"], "application/x-protobuf");
    assert_eq!(h1["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h1["authorization"], "Bearer secret");
    assert!(h1["user-agent"].to_str().unwrap().starts_with("Strata/"));
    let h2 = r2.state.headers.lock()[0].clone();
    assert_eq!(
        h2["content-type"],
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    );
    assert_eq!(h2["x-prometheus-remote-write-version"], "2.0.0");

    let st = agent.queues_status();
    assert_eq!(st.len(), 2);
    for q in &st {
        assert_eq!(q.samples_sent, 500, "{q:?}");
        assert_eq!(q.samples_failed, 0);
        assert_eq!(q.samples_pending, 0);
        assert_eq!(q.highest_sent_timestamp_ms, Some(1099));
        assert_eq!(q.delivered, agent.storage().committed());
        assert_eq!(q.shards, 2);
    }
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_with_backoff_then_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let r = receiver(Box::new(|n| if n < 4 { (503, None) } else { (204, None) })).await;
    let mut s = settings("r", &r.url());
    s.min_shards = 1;
    s.max_shards = 1;
    s.max_samples_per_send = 1000;
    let agent = Agent::start(dir.path(), opts(), vec![s]).unwrap();
    append(&agent.storage(), 2, 0, 20);
    wait_until("delivery", Duration::from_secs(5), || {
        r.samples().len() >= 40
    })
    .await;
    assert_exactly_once_in_order(&r.samples(), 2, 0, 20);
    // Backoff doubles from 10 ms: gaps of at least 10, 20, 40 ms.
    let times = r.state.times.lock().clone();
    assert!(times.len() >= 5);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_millis(10), "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(40), "{gaps:?}");
    let st = &agent.queues_status()[0];
    assert!(st.samples_retried >= 4, "{st:?}");
    assert_eq!(st.samples_sent, 40);
    assert!(st.last_error.as_deref().unwrap_or("").contains("503"));
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_retry_after_on_429() {
    let dir = tempfile::tempdir().unwrap();
    let r = receiver(Box::new(|n| {
        if n == 0 {
            (429, Some("1".into()))
        } else {
            (204, None)
        }
    }))
    .await;
    let mut s = settings("r", &r.url());
    s.min_shards = 1;
    s.max_shards = 1;
    s.max_samples_per_send = 1000;
    let agent = Agent::start(dir.path(), opts(), vec![s]).unwrap();
    append(&agent.storage(), 1, 0, 5);
    wait_until("delivery", Duration::from_secs(5), || {
        r.samples().len() >= 5
    })
    .await;
    let times = r.state.times.lock().clone();
    assert!(
        times[1] - times[0] >= Duration::from_millis(950),
        "retried after {:?}",
        times[1] - times[0]
    );
    assert_exactly_once_in_order(&r.samples(), 1, 0, 5);
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let r = receiver(Box::new(|_| (400, None))).await;
    let r429 = receiver(Box::new(|_| (429, None))).await;
    let mut s = settings("r", &r.url());
    s.min_shards = 1;
    s.max_shards = 1;
    s.max_samples_per_send = 1000;
    let mut s2 = settings("no429", &r429.url());
    s2.retry_on_http_429 = false;
    s2.min_shards = 1;
    s2.max_samples_per_send = 1000;
    let agent = Agent::start(dir.path(), opts(), vec![s, s2]).unwrap();
    append(&agent.storage(), 3, 0, 10);
    let end = agent.storage().committed();
    wait_until("failures counted", Duration::from_secs(5), || {
        agent
            .queues_status()
            .iter()
            .all(|q| q.samples_failed == 30 && q.delivered == end)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = agent.queues_status();
    for q in &st {
        assert_eq!(q.samples_retried, 0, "{q:?}");
        assert_eq!(q.samples_sent, 0);
        assert!(q.last_error.is_some());
    }
    // One request per batch, none repeated.
    let sent_batches = r.requests();
    assert!((1..=4).contains(&sent_batches), "{sent_batches}");
    assert!(r.samples().is_empty());
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_outage_delivers_backlog() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, leave it closed: connection refused until the receiver starts.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let url = format!("http://{addr}/write");

    let agent = Agent::start(dir.path(), opts(), vec![settings("r", &url)]).unwrap();
    append(&agent.storage(), 4, 0, 100);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = &agent.queues_status()[0];
    assert_eq!(st.samples_sent, 0);
    assert!(st.samples_retried > 0, "{st:?}");
    assert!(st.backlog_bytes > 0);
    agent.shutdown(Duration::from_millis(200)).await.unwrap();

    let agent = Agent::start(dir.path(), opts(), vec![settings("r", &url)]).unwrap();
    append(&agent.storage(), 4, 100, 50);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let r = receiver_on(listener, ok()).await;
    wait_until("backlog delivered", Duration::from_secs(5), || {
        r.samples().len() >= 600
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_exactly_once_in_order(&r.samples(), 4, 0, 150);
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_without_shutdown_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let up = Arc::new(AtomicUsize::new(1));
    let up2 = up.clone();
    let r = receiver(Box::new(move |_| {
        if up2.load(Ordering::SeqCst) == 1 {
            (204, None)
        } else {
            (503, None)
        }
    }))
    .await;
    let agent = Agent::start(dir.path(), opts(), vec![settings("r", &r.url())]).unwrap();
    append(&agent.storage(), 3, 0, 50);
    wait_until("first part", Duration::from_secs(5), || {
        r.samples().len() >= 150
    })
    .await;
    up.store(0, Ordering::SeqCst);
    append(&agent.storage(), 3, 50, 50);
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(agent); // no shutdown: nothing more is saved
    tokio::time::sleep(Duration::from_millis(50)).await;

    up.store(1, Ordering::SeqCst);
    let agent = Agent::start(dir.path(), opts(), vec![settings("r", &r.url())]).unwrap();
    append(&agent.storage(), 3, 100, 10);
    wait_until("everything", Duration::from_secs(5), || {
        agent.queues_status()[0].delivered == agent.storage().committed()
    })
    .await;
    assert_all_present(&r.samples(), 3, 0, 110);
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_relabel_and_external_labels() {
    let dir = tempfile::tempdir().unwrap();
    let r = receiver(ok()).await;
    let mut s = settings("r", &r.url());
    s.external_labels = Labels::from_pairs(&[("cluster", "c1"), ("instance", "ignored")]);
    s.write_relabel = Some(Arc::new(|l: &Labels| {
        if l.get("instance") == Some("i1") {
            None
        } else {
            let mut b = l.builder();
            b.set("relabeled", "yes");
            Some(b.build())
        }
    }));
    let agent = Agent::start(dir.path(), opts(), vec![s]).unwrap();
    append(&agent.storage(), 3, 0, 10);
    let end = agent.storage().committed();
    wait_until("delivery", Duration::from_secs(5), || {
        agent.queues_status()[0].delivered == end
    })
    .await;
    let got = r.samples();
    assert_eq!(got.len(), 20);
    for (l, _, _) in &got {
        assert_eq!(l.get("cluster"), Some("c1"));
        assert_eq!(l.get("relabeled"), Some("yes"));
        assert_ne!(l.get("instance"), Some("ignored"));
        assert_ne!(l.get("instance"), Some("i1"));
    }
    assert_eq!(agent.queues_status()[0].samples_dropped, 10);
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_removes_only_delivered_segments_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let up = Arc::new(AtomicUsize::new(1));
    let up2 = up.clone();
    let r = receiver(Box::new(move |_| {
        if up2.load(Ordering::SeqCst) == 1 {
            (204, None)
        } else {
            (503, None)
        }
    }))
    .await;
    let mut o = opts();
    o.wal_compression = false;
    let agent = Agent::start(dir.path(), o.clone(), vec![settings("r", &r.url())]).unwrap();
    let storage = agent.storage();
    // Several segments of 64 KiB.
    append(&storage, 50, 0, 800);
    let end = storage.committed();
    assert!(end.segment >= 4, "{end:?}");
    wait_until("delivery", Duration::from_secs(5), || {
        agent.queues_status()[0].delivered == end
    })
    .await;
    let stats = agent.truncate_now().unwrap();
    assert_eq!(stats.removed_before, Some(end.segment), "{stats:?}");
    assert_eq!(stats.series_kept, 50);
    let wal_dir = storage.wal_dir().to_path_buf();
    let (first, _) = strata_tsdb::wal::segments(&wal_dir).unwrap().unwrap();
    assert_eq!(first, end.segment);
    let (_, cp) = strata_tsdb::wal::last_checkpoint(&wal_dir)
        .unwrap()
        .unwrap();
    assert_eq!(cp, end.segment - 1);

    // The remote is down: what follows must survive truncation.
    up.store(0, Ordering::SeqCst);
    let undelivered_from = storage.committed();
    append(&storage, 50, 800, 300);
    assert!(storage.committed().segment > undelivered_from.segment + 1);
    agent.truncate_now().unwrap();
    let (first, _) = strata_tsdb::wal::segments(&wal_dir).unwrap().unwrap();
    assert!(
        (end.segment..=undelivered_from.segment).contains(&first),
        "first segment {first}, undelivered from {undelivered_from:?}"
    );
    agent.shutdown(Duration::from_millis(100)).await.unwrap();
    // The directory lock goes with the last handle on the storage.
    drop(storage);

    // Reopen: series come back from the checkpoint and segments; the queue resolves refs of
    // series whose series record is only in the checkpoint.
    up.store(1, Ordering::SeqCst);
    let agent = Agent::start(dir.path(), o, vec![settings("r", &r.url())]).unwrap();
    assert_eq!(agent.storage().stats().series, 50);
    append(&agent.storage(), 50, 1100, 5);
    wait_until("delivery after reopen", Duration::from_secs(5), || {
        agent.queues_status()[0].delivered == agent.storage().committed()
    })
    .await;
    let got = r.samples();
    assert_all_present(&got, 50, 0, 1105);
    assert!(
        got.len() < 50 * 1105 + 50 * 300,
        "too many duplicates: {}",
        got.len()
    );
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_queues_keeps_unchanged_adds_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let ra = receiver(ok()).await;
    let rb = receiver(ok()).await;
    let sa = settings("a", &ra.url());
    let agent = Agent::start(dir.path(), opts(), vec![sa.clone()]).unwrap();
    append(&agent.storage(), 2, 0, 10);
    wait_until("a", Duration::from_secs(5), || ra.samples().len() >= 20).await;

    // `a` unchanged keeps running (its counters survive); `b` starts at the end of the WAL.
    agent
        .apply_queues(vec![sa.clone(), settings("b", &rb.url())])
        .await
        .unwrap();
    let st = agent.queues_status();
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].samples_sent, 20);
    append(&agent.storage(), 2, 10, 10);
    wait_until("both", Duration::from_secs(5), || {
        ra.samples().len() >= 40 && rb.samples().len() >= 20
    })
    .await;
    assert_exactly_once_in_order(&ra.samples(), 2, 0, 20);
    assert_exactly_once_in_order(&rb.samples(), 2, 10, 20);

    // Removing `a` deletes its position file; changing `b` restarts it from its position.
    let pos_a = dir
        .path()
        .join(position::position_file_name("a", &ra.url()));
    assert!(pos_a.exists());
    let mut sb = settings("b", &rb.url());
    sb.max_samples_per_send = 7;
    agent.apply_queues(vec![sb]).await.unwrap();
    assert!(!pos_a.exists());
    append(&agent.storage(), 2, 20, 10);
    wait_until("b again", Duration::from_secs(5), || {
        rb.samples().len() >= 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_exactly_once_in_order(&rb.samples(), 2, 10, 30);
    assert_eq!(ra.samples().len(), 40);
    assert!(agent
        .apply_queues(vec![settings("x", "http://h/"), settings("x", "http://h/")])
        .await
        .is_err());
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}

#[test]
fn a_second_agent_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = AgentStorage::open(dir.path(), opts()).unwrap();
    let err = AgentStorage::open(dir.path(), opts()).unwrap_err();
    assert!(err.to_string().contains("lock"), "{err}");
    first.close().unwrap();
    drop(first);
    AgentStorage::open(dir.path(), opts()).expect("reopens once the first is gone");
}

/// A receiver that behaves as Prometheus 2.x: a request holding any sample at or before the
/// newest one it has of that series is refused whole (400, "out of order sample").
async fn prometheus2_like(have_until: i64) -> (Receiver, Arc<Mutex<BTreeMap<String, i64>>>) {
    let newest: Arc<Mutex<BTreeMap<String, i64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    for i in 0..3 {
        newest.lock().insert(series(i).to_string(), have_until);
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let state = RecvState::new(ok());
    let (st, nw) = (state.clone(), newest.clone());
    let app = axum::Router::new().route(
        "/write",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (st, nw) = (st.clone(), nw.clone());
            async move {
                let (_, batch) = st.receive(&headers, &body);
                let mut newest = nw.lock();
                let mut staged = newest.clone();
                for s in &batch.series {
                    let key = s.labels.to_string();
                    for (t, _) in &s.samples {
                        if staged.get(&key).is_some_and(|n| t <= n) {
                            return (StatusCode::BAD_REQUEST, "out of order sample".to_string());
                        }
                        staged.insert(key.clone(), *t);
                    }
                }
                *newest = staged;
                st.accept(batch);
                (StatusCode::NO_CONTENT, String::new())
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (Receiver { addr, state, task }, newest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_sent_again_do_not_take_new_ones_down_with_them() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver has t <= 4 already (delivered before a crash the agent's saved position
    // does not know about); the agent sends 0..10 again in one batch.
    let (r, _) = prometheus2_like(4).await;
    let mut s = settings("p2", &r.url());
    s.min_shards = 1;
    s.max_shards = 1;
    s.max_samples_per_send = 1000;
    let agent = Agent::start(dir.path(), opts(), vec![s]).unwrap();
    append(&agent.storage(), 3, 0, 10);
    let end = agent.storage().committed();
    wait_until("everything acknowledged", Duration::from_secs(10), || {
        agent.queues_status().iter().all(|q| q.delivered == end)
    })
    .await;
    // Every new sample arrived, once; only the 15 samples the receiver had were dropped.
    assert_exactly_once_in_order(&r.samples(), 3, 5, 10);
    let q = &agent.queues_status()[0];
    assert_eq!((q.samples_sent, q.samples_failed), (15, 15), "{q:?}");
    agent.shutdown(Duration::from_secs(2)).await.unwrap();
}
