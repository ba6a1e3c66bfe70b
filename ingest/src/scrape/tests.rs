//! Scrape tests: the append/report logic driven directly (deterministic), and whole loops
//! under the manager against real HTTP servers on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::labels::{MatchType, Matcher};
use strata_tsdb::storage::{is_stale_nan, Queryable};
use strata_tsdb::Labels;

use super::append::{process, Counts, LoopConfig};
use super::cache::ScrapeCache;
use super::*;

// ---------------------------------------------------------------------------------------
// Helpers

type Dump = BTreeMap<String, Vec<(i64, f64)>>;

fn dump(head: &Arc<Head>) -> Dump {
    let q = head.querier(i64::MIN, i64::MAX).unwrap();
    let m = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
    let mut out = Dump::new();
    for s in q.select(true, None, &[m]) {
        let s = s.unwrap();
        let mut it = s.iterator();
        let mut v = Vec::new();
        while it.next() {
            v.push(it.at());
        }
        out.insert(s.labels().to_string(), v);
    }
    out
}

/// Samples of the series whose printed labels contain all of `parts`.
fn find<'a>(d: &'a Dump, parts: &[&str]) -> Vec<&'a (i64, f64)> {
    let hits: Vec<_> = d
        .iter()
        .filter(|(k, _)| parts.iter().all(|p| k.contains(p)))
        .collect();
    assert!(hits.len() <= 1, "ambiguous {parts:?}: {hits:?}");
    hits.first()
        .map(|(_, v)| v.iter().collect())
        .unwrap_or_default()
}

fn values(d: &Dump, parts: &[&str]) -> Vec<f64> {
    find(d, parts).iter().map(|(_, v)| *v).collect()
}

fn target_labels() -> Labels {
    Labels::from_pairs(&[
        ("job", "j"),
        ("instance", "h:1"),
        ("__address__", "h:1"),
        ("__scheme__", "http"),
    ])
}

fn loop_cfg(params: ScrapeParams) -> LoopConfig {
    LoopConfig::new(ScrapeTarget {
        labels: target_labels(),
        discovered_labels: Labels::empty(),
        url: "http://h:1/metrics".into(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        params: Arc::new(params),
    })
}

struct Direct {
    cfg: LoopConfig,
    cache: ScrapeCache,
    head: Arc<Head>,
}

impl Direct {
    fn new(params: ScrapeParams) -> Self {
        Self {
            cfg: loop_cfg(params),
            cache: ScrapeCache::new(),
            head: Head::in_memory(HeadOptions::default()),
        }
    }

    fn scrape(&mut self, body: &str, t: i64) -> (Counts, Option<String>) {
        self.scrape_ct(body, Some("text/plain; version=0.0.4"), t)
    }

    fn scrape_ct(&mut self, body: &str, ct: Option<&str>, t: i64) -> (Counts, Option<String>) {
        let fetched = Ok((body.as_bytes().to_vec(), ct.map(str::to_string)));
        process(
            &self.cfg,
            &mut self.cache,
            &self.head,
            &fetched,
            t,
            Instant::now(),
        )
    }

    fn fail(&mut self, err: &str, t: i64) -> (Counts, Option<String>) {
        process(
            &self.cfg,
            &mut self.cache,
            &self.head,
            &Err(err.to_string()),
            t,
            Instant::now(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Append logic, driven directly

#[test]
fn stores_samples_and_report_series() {
    let mut d = Direct::new(ScrapeParams::default());
    let body = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\nb 2\n";
    let (c, err) = d.scrape(body, 1000);
    assert_eq!(err, None);
    assert_eq!(
        c,
        Counts {
            total: 2,
            added: 2,
            series_added: 2
        }
    );
    let (c, err) = d.scrape(body, 2000);
    assert_eq!(err, None);
    assert_eq!(c.series_added, 0);
    let db = dump(&d.head);
    assert_eq!(
        find(
            &db,
            &[
                "__name__=\"a_total\"",
                "instance=\"h:1\"",
                "job=\"j\"",
                "x=\"1\""
            ]
        ),
        vec![&(1000, 3.0), &(2000, 3.0)]
    );
    assert_eq!(values(&db, &["\"b\""]), vec![2.0, 2.0]);
    // Internal target labels are not attached.
    assert!(!db.keys().any(|k| k.contains("__address__")), "{db:?}");
    assert_eq!(values(&db, &["\"up\""]), vec![1.0, 1.0]);
    assert_eq!(values(&db, &["\"scrape_samples_scraped\""]), vec![2.0, 2.0]);
    assert_eq!(
        values(&db, &["\"scrape_samples_post_metric_relabeling\""]),
        vec![2.0, 2.0]
    );
    assert_eq!(values(&db, &["\"scrape_series_added\""]), vec![2.0, 0.0]);
    let dur = values(&db, &["\"scrape_duration_seconds\""]);
    assert!(dur.len() == 2 && dur.iter().all(|v| *v >= 0.0 && *v < 5.0));
    // Report series carry the target labels.
    assert_eq!(
        find(&db, &["\"up\"", "instance=\"h:1\"", "job=\"j\""]).len(),
        2
    );
}

#[test]
fn honor_labels_both_ways() {
    let body = "m{job=\"exposed\",exported_job=\"e\",instance=\"\"} 1\n";
    let mut d = Direct::new(ScrapeParams::default());
    assert_eq!(d.scrape(body, 1000).1, None);
    let db = dump(&d.head);
    let k: Vec<_> = db.keys().filter(|k| k.contains("\"m\"")).collect();
    assert_eq!(
        k,
        vec!["{__name__=\"m\", exported_exported_job=\"exposed\", exported_job=\"e\", instance=\"h:1\", job=\"j\"}"]
    );

    let mut d = Direct::new(ScrapeParams {
        honor_labels: true,
        ..Default::default()
    });
    assert_eq!(d.scrape(body, 1000).1, None);
    let db = dump(&d.head);
    let k: Vec<_> = db.keys().filter(|k| k.contains("\"m\"")).collect();
    // The exposed (empty) instance wins too: the label is removed.
    assert_eq!(
        k,
        vec!["{__name__=\"m\", exported_job=\"e\", job=\"exposed\"}"]
    );
}

#[test]
fn honor_timestamps_and_their_staleness() {
    for (honor, track) in [(true, false), (false, false), (true, true)] {
        let mut d = Direct::new(ScrapeParams {
            honor_timestamps: honor,
            track_timestamps_staleness: track,
            ..Default::default()
        });
        assert_eq!(d.scrape("a 1 500\nb 2\n", 1000).1, None);
        assert_eq!(d.scrape("b 2\n", 2000).1, None);
        let db = dump(&d.head);
        let a = find(&db, &["\"a\""]);
        let first = if honor { 500 } else { 1000 };
        assert_eq!(a[0], &(first, 1.0), "honor {honor}");
        // Explicitly timestamped series get no staleness marker unless tracked.
        let stale = a.len() == 2 && a[1].0 == 2000 && is_stale_nan(a[1].1);
        assert_eq!(stale, !honor || track, "honor {honor} track {track}: {a:?}");
        if !stale {
            assert_eq!(a.len(), 1);
        }
    }
}

#[test]
fn vanished_series_and_failed_scrape_get_stale_markers() {
    let mut d = Direct::new(ScrapeParams::default());
    d.scrape("a 1\nb 2\n", 1000);
    d.scrape("a 1\n", 2000);
    d.scrape("a 1\nb 3\n", 3000);
    let (c, err) = d.fail("server returned HTTP status 500", 4000);
    assert_eq!(err.as_deref(), Some("server returned HTTP status 500"));
    assert_eq!(c, Counts::default());
    let db = dump(&d.head);
    let b = find(&db, &["\"b\""]);
    assert_eq!(b.len(), 4);
    assert_eq!((b[1].0, is_stale_nan(b[1].1)), (2000, true));
    assert_eq!(b[2], &(3000, 3.0));
    assert_eq!((b[3].0, is_stale_nan(b[3].1)), (4000, true));
    let a = find(&db, &["\"a\""]);
    assert_eq!(a.len(), 4);
    assert!(is_stale_nan(a[3].1));
    assert_eq!(values(&db, &["\"up\""]), vec![1.0, 1.0, 1.0, 0.0]);
    // A second failure writes nothing more for the series.
    d.fail("again", 5000);
    assert_eq!(find(&dump(&d.head), &["\"a\""]).len(), 4);
}

#[test]
fn sample_limit_fails_the_whole_scrape() {
    let mut d = Direct::new(ScrapeParams {
        sample_limit: 2,
        ..Default::default()
    });
    assert_eq!(d.scrape("old 1\n", 1000).1, None);
    let (c, err) = d.scrape("a 1\nb 2\nc 3\n", 2000);
    assert_eq!(err.as_deref(), Some("sample limit exceeded"));
    assert_eq!(c.total, 3);
    assert_eq!(c.added, 3);
    let db = dump(&d.head);
    for n in ["\"a\"", "\"b\"", "\"c\""] {
        assert!(find(&db, &[n]).is_empty(), "{n} stored: {db:?}");
    }
    let old = find(&db, &["\"old\""]);
    assert!(old.len() == 2 && is_stale_nan(old[1].1));
    assert_eq!(values(&db, &["\"up\""]), vec![1.0, 0.0]);
    assert_eq!(values(&db, &["\"scrape_samples_scraped\""]), vec![1.0, 3.0]);
    // Within the limit again: stored.
    assert_eq!(d.scrape("a 1\nb 2\n", 3000).1, None);
    assert_eq!(values(&dump(&d.head), &["\"a\""]), vec![1.0]);
}

#[test]
fn parse_error_stores_nothing() {
    let mut d = Direct::new(ScrapeParams::default());
    let (_, err) = d.scrape("a 1\nb{ 2\n", 1000);
    assert!(err.is_some());
    let db = dump(&d.head);
    assert!(find(&db, &["\"a\""]).is_empty(), "{db:?}");
    assert_eq!(values(&db, &["\"up\""]), vec![0.0]);
    // Unsupported content type without fallback: failed; with a fallback: parsed.
    let (_, err) = d.scrape_ct("a 1\n", Some("text/html"), 2000);
    assert!(err.unwrap().contains("text/html"));
    let mut d = Direct::new(ScrapeParams {
        fallback_protocol: Some(ScrapeProtocol::PrometheusText0_0_4),
        ..Default::default()
    });
    assert_eq!(d.scrape_ct("a 1\n", None, 1000).1, None);
    assert_eq!(values(&dump(&d.head), &["\"a\""]), vec![1.0]);
}

#[test]
fn metric_relabel_and_label_limits() {
    let relabel: MetricRelabelFn = Arc::new(|l: &Labels| {
        if l.metric_name() == Some("drop_me") {
            None
        } else {
            let mut b = l.builder();
            b.set("added", "yes");
            Some(b.build())
        }
    });
    let mut d = Direct::new(ScrapeParams {
        metric_relabel: Some(relabel),
        ..Default::default()
    });
    let (c, err) = d.scrape("keep 1\ndrop_me 2\n", 1000);
    assert_eq!(err, None);
    assert_eq!((c.total, c.added, c.series_added), (2, 1, 1));
    let (c, _) = d.scrape("keep 1\ndrop_me 2\n", 2000);
    assert_eq!((c.total, c.added, c.series_added), (2, 1, 0));
    let db = dump(&d.head);
    assert_eq!(values(&db, &["\"keep\"", "added=\"yes\""]), vec![1.0, 1.0]);
    assert!(find(&db, &["drop_me"]).is_empty());
    assert_eq!(
        values(&db, &["\"scrape_samples_post_metric_relabeling\""]),
        vec![1.0, 1.0]
    );

    let mut d = Direct::new(ScrapeParams {
        label_limit: 3,
        ..Default::default()
    });
    let (_, err) = d.scrape("ok 1\nm{a=\"1\"} 1\n", 1000);
    assert!(err.unwrap().starts_with("label_limit exceeded"));
    assert!(find(&dump(&d.head), &["\"ok\""]).is_empty());
    let mut d = Direct::new(ScrapeParams {
        label_value_length_limit: 3,
        ..Default::default()
    });
    let (_, err) = d.scrape("m{a=\"1234\"} 1\n", 1000);
    assert!(err
        .unwrap()
        .starts_with("label_value_length_limit exceeded"));
}

#[test]
fn duplicates_and_out_of_order_are_skipped_not_fatal() {
    let mut d = Direct::new(ScrapeParams::default());
    let (c, err) = d.scrape("a 1\na 2\nb 1 5000\n", 10_000);
    assert_eq!(err, None);
    assert_eq!(c.added, 3);
    // Out of order explicit timestamp: skipped, the rest is stored.
    let (_, err) = d.scrape("a 3\nb 1 4000\n", 11_000);
    assert_eq!(err, None);
    let db = dump(&d.head);
    assert_eq!(find(&db, &["\"a\""]), vec![&(10_000, 1.0), &(11_000, 3.0)]);
    assert_eq!(find(&db, &["\"b\""]), vec![&(5000, 1.0)]);
}

#[test]
fn offsets_spread_and_stable() {
    let iv = Duration::from_millis(1000);
    let now = SystemTime::now();
    let phase = |i: usize| {
        let l = Labels::from_pairs(&[("instance", format!("h{i}:9100")), ("job", "j".into())]);
        let h = target_hash(&l, &format!("http://h{i}:9100/metrics"));
        let off = scrape_offset(h, iv, 0, now);
        assert!(off > Duration::ZERO && off <= iv);
        ((now + off).duration_since(UNIX_EPOCH).unwrap().as_nanos() % iv.as_nanos()) as u64
    };
    let phases: Vec<u64> = (0..50).map(phase).collect();
    // Same target, same phase.
    assert_eq!(phase(7), phases[7]);
    // Spread: at least 8 of 10 buckets of the interval used.
    let buckets: std::collections::HashSet<u64> = phases.iter().map(|p| p / 100_000_000).collect();
    assert!(buckets.len() >= 8, "{phases:?}");
    // A seed changes the phase.
    let l = Labels::from_pairs(&[("instance", "x")]);
    let h = target_hash(&l, "u");
    assert_ne!(
        scrape_offset(h, iv, 0, now),
        scrape_offset(h, iv, 123_456_789, now)
    );
}

// ---------------------------------------------------------------------------------------
// Real loops against HTTP servers

#[derive(Clone)]
struct Page {
    body: Vec<u8>,
    content_type: Option<&'static str>,
    status: u16,
    delay: Duration,
}

impl Page {
    fn text(body: &str) -> Self {
        Page {
            body: body.as_bytes().to_vec(),
            content_type: Some("text/plain; version=0.0.4"),
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Clone)]
struct Served {
    page: Arc<Mutex<Page>>,
    hits: Arc<AtomicUsize>,
    hit_times: Arc<Mutex<Vec<Instant>>>,
    headers: Arc<Mutex<Option<HeaderMap>>>,
}

struct Server {
    addr: SocketAddr,
    s: Served,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }
    fn set(&self, p: Page) {
        *self.s.page.lock() = p;
    }
    fn hits(&self) -> usize {
        self.s.hits.load(Ordering::SeqCst)
    }
}

async fn handler(
    axum::extract::State(s): axum::extract::State<Served>,
    headers: HeaderMap,
) -> axum::response::Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    s.hit_times.lock().push(Instant::now());
    *s.headers.lock() = Some(headers);
    let p = s.page.lock().clone();
    if !p.delay.is_zero() {
        tokio::time::sleep(p.delay).await;
    }
    let mut resp = (StatusCode::from_u16(p.status).unwrap(), p.body).into_response();
    if let Some(ct) = p.content_type {
        resp.headers_mut()
            .insert("content-type", ct.parse().unwrap());
    } else {
        resp.headers_mut().remove("content-type");
    }
    resp
}

async fn serve(page: Page) -> Server {
    let s = Served {
        page: Arc::new(Mutex::new(page)),
        hits: Arc::default(),
        hit_times: Arc::default(),
        headers: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(handler))
        .with_state(s.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, s }
}

fn target(srv: &Server, params: &Arc<ScrapeParams>, ms: u64, timeout_ms: u64) -> ScrapeTarget {
    let inst = srv.addr.to_string();
    ScrapeTarget {
        labels: Labels::from_pairs(&[
            ("job", params.job.as_str()),
            ("instance", inst.as_str()),
            ("__address__", inst.as_str()),
        ]),
        discovered_labels: Labels::from_pairs(&[("__address__", inst.as_str())]),
        url: srv.url(),
        interval: Duration::from_millis(ms),
        timeout: Duration::from_millis(timeout_ms),
        params: params.clone(),
    }
}

fn pool(params: &Arc<ScrapeParams>, targets: Vec<ScrapeTarget>) -> ScrapePool {
    ScrapePool {
        name: params.job.clone(),
        params: params.clone(),
        targets,
        dropped: vec![],
        target_limit: 0,
    }
}

fn params(job: &str) -> Arc<ScrapeParams> {
    Arc::new(ScrapeParams {
        job: job.into(),
        ..Default::default()
    })
}

/// Polls `cond` every 10 ms for at most `secs` seconds.
async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn status_of(m: &ScrapeManager, url: &str) -> Option<TargetStatus> {
    m.targets()
        .active
        .into_iter()
        .find(|t| t.url == url)
        .map(|t| t.status)
}

fn scrapes(m: &ScrapeManager, url: &str) -> u64 {
    status_of(m, url).map_or(0, |s| s.scrapes)
}

fn new_manager() -> (Arc<Head>, ScrapeManager) {
    let head = Head::in_memory(HeadOptions::default());
    let m = ScrapeManager::new(Arc::new(head.clone()));
    (head, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_text_page_into_head() {
    let srv = serve(Page::text("# TYPE a counter\na_total 7\nb{x=\"y\"} 1.5\n")).await;
    let (head, m) = new_manager();
    let p = Arc::new(ScrapeParams {
        job: "text".into(),
        http: crate::http::HttpSettings {
            basic_auth: Some(("u".into(), "pw".into())),
            headers: vec![("X-Extra".into(), "1".into())],
            ..Default::default()
        },
        ..Default::default()
    });
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 80)])])
        .await;
    let url = srv.url();
    wait_for(5, "two scrapes", || scrapes(&m, &url) >= 2).await;
    let st = status_of(&m, &url).unwrap();
    assert_eq!(st.health, TargetHealth::Up, "{st:?}");
    assert_eq!(st.last_samples, 2);
    assert!(st.last_scrape.is_some() && st.last_error.is_none());
    let db = dump(&head);
    assert!(
        values(&db, &["\"a_total\"", "job=\"text\""]).len() >= 2,
        "{db:?}"
    );
    assert!(values(&db, &["\"b\"", "x=\"y\""]).iter().all(|v| *v == 1.5));
    assert!(values(&db, &["\"up\""]).iter().all(|v| *v == 1.0));
    let h = srv.s.headers.lock().clone().unwrap();
    assert_eq!(
        h["accept"],
        crate::scrape_format::default_accept_header().as_str()
    );
    assert_eq!(h["x-prometheus-scrape-timeout-seconds"], "0.08");
    assert_eq!(h["accept-encoding"], "gzip");
    assert_eq!(h["authorization"], "Basic dTpwdw==");
    assert_eq!(h["x-extra"], "1");
    let snap = m.targets();
    assert_eq!(snap.active.len(), 1);
    assert_eq!(snap.active[0].pool, "text");
    assert_eq!(snap.active[0].discovered_labels.len(), 1);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_content_type_selects_its_parser() {
    let om = "# TYPE c counter\nc_total 1\nc_created 123.0\n# EOF\n";
    let srv = serve(Page {
        content_type: Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        ..Page::text(om)
    })
    .await;
    let (head, m) = new_manager();
    let p = Arc::new(ScrapeParams {
        job: "om".into(),
        enable_compression: false,
        scrape_protocols: vec![ScrapeProtocol::OpenMetricsText1_0_0],
        ..Default::default()
    });
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 100)])])
        .await;
    let url = srv.url();
    wait_for(5, "a scrape", || scrapes(&m, &url) >= 1).await;
    assert_eq!(status_of(&m, &url).unwrap().health, TargetHealth::Up);
    let db = dump(&head);
    assert!(!values(&db, &["\"c_total\""]).is_empty(), "{db:?}");
    let h = srv.s.headers.lock().clone().unwrap();
    assert_eq!(h["accept-encoding"], "identity");
    assert!(h["accept"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text;version=1.0.0"));
    // The text format without `# EOF` under the OpenMetrics content type fails to parse.
    srv.set(Page {
        content_type: Some("application/openmetrics-text"),
        ..Page::text("d 1\n")
    });
    let n = scrapes(&m, &url);
    wait_for(5, "a failed scrape", || scrapes(&m, &url) > n + 1).await;
    let st = status_of(&m, &url).unwrap();
    assert_eq!(st.health, TargetHealth::Down);
    assert!(st.last_error.unwrap().contains("EOF"));
    assert!(find(&dump(&head), &["\"d\""]).is_empty());
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_size_limit_fails_the_scrape() {
    let srv = serve(Page::text("a_metric_with_a_long_name 1\n")).await;
    let (head, m) = new_manager();
    let p = Arc::new(ScrapeParams {
        job: "limit".into(),
        body_size_limit: 10,
        ..Default::default()
    });
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 100)])])
        .await;
    let url = srv.url();
    wait_for(5, "a scrape", || scrapes(&m, &url) >= 1).await;
    let st = status_of(&m, &url).unwrap();
    assert_eq!(st.health, TargetHealth::Down);
    assert_eq!(st.last_error.as_deref(), Some("body size limit exceeded"));
    let db = dump(&head);
    assert!(find(&db, &["a_metric_with_a_long_name"]).is_empty());
    assert!(values(&db, &["\"up\""]).iter().all(|v| *v == 0.0));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_marks_down_and_loop_continues() {
    let srv = serve(Page {
        delay: Duration::from_millis(400),
        ..Page::text("a 1\n")
    })
    .await;
    let (head, m) = new_manager();
    let p = params("slow");
    m.apply(vec![pool(&p, vec![target(&srv, &p, 150, 100)])])
        .await;
    let url = srv.url();
    wait_for(5, "three scrapes", || scrapes(&m, &url) >= 3).await;
    let st = status_of(&m, &url).unwrap();
    assert_eq!(st.health, TargetHealth::Down);
    assert!(st.last_error.unwrap().contains("deadline exceeded"));
    assert!(st.last_scrape_duration.unwrap() < Duration::from_millis(390));
    assert!(srv.hits() >= 3);
    let up = values(&dump(&head), &["\"up\""]);
    assert!(up.len() >= 3 && up.iter().all(|v| *v == 0.0), "{up:?}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_target_marks_series_stale() {
    let srv = serve(Page::text("a 1\n")).await;
    let (head, m) = new_manager();
    let p = params("fail");
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 100)])])
        .await;
    let url = srv.url();
    wait_for(5, "a scrape", || scrapes(&m, &url) >= 1).await;
    srv.set(Page {
        status: 500,
        ..Page::text("oops")
    });
    wait_for(5, "target down", || {
        status_of(&m, &url).is_some_and(|s| s.health == TargetHealth::Down)
    })
    .await;
    let st = status_of(&m, &url).unwrap();
    assert!(st.last_error.unwrap().contains("500"));
    let a = values(&dump(&head), &["\"a\""]);
    assert!(is_stale_nan(*a.last().unwrap()), "{a:?}");
    assert_eq!(a.iter().filter(|v| is_stale_nan(**v)).count(), 1);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_target_gets_end_of_run_staleness() {
    let srv = serve(Page::text("a 1\n")).await;
    let (head, m) = new_manager();
    let p = params("gone");
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 100)])])
        .await;
    let url = srv.url();
    wait_for(5, "two scrapes", || scrapes(&m, &url) >= 2).await;
    m.apply(vec![pool(&p, vec![])]).await;
    assert!(m.targets().active.is_empty());
    let hits = srv.hits();
    // Markers come about 2.1 intervals after the stop.
    wait_for(5, "stale markers", || {
        let db = dump(&head);
        let a = values(&db, &["\"a\""]);
        let up = values(&db, &["\"up\""]);
        a.last().is_some_and(|v| is_stale_nan(*v)) && up.last().is_some_and(|v| is_stale_nan(*v))
    })
    .await;
    let db = dump(&head);
    for n in [
        "\"scrape_duration_seconds\"",
        "\"scrape_samples_scraped\"",
        "\"scrape_samples_post_metric_relabeling\"",
        "\"scrape_series_added\"",
    ] {
        assert!(is_stale_nan(*values(&db, &[n]).last().unwrap()), "{n}");
    }
    assert_eq!(srv.hits(), hits, "scraped after removal");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_no_staleness() {
    let srv = serve(Page::text("a 1\n")).await;
    let (head, m) = new_manager();
    let p = params("shut");
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 100)])])
        .await;
    let url = srv.url();
    wait_for(5, "a scrape", || scrapes(&m, &url) >= 1).await;
    m.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = values(&dump(&head), &["\"a\""]);
    assert!(a.iter().all(|v| !is_stale_nan(*v)), "{a:?}");
    // Applying after stop does nothing.
    m.apply(vec![pool(&p, vec![target(&srv, &p, 100, 100)])])
        .await;
    assert!(m.targets().active.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_diff_keeps_unchanged_loops() {
    let srv_a = serve(Page::text("a 1\n")).await;
    let srv_b = serve(Page::text("b 1\n")).await;
    let (head, m) = new_manager();
    let p = params("diff");
    let ta = target(&srv_a, &p, 200, 200);
    m.apply(vec![pool(&p, vec![ta.clone()])]).await;
    let (ua, ub) = (srv_a.url(), srv_b.url());
    wait_for(5, "two scrapes of a", || scrapes(&m, &ua) >= 2).await;
    let before = scrapes(&m, &ua);
    // Same params Arc, same target, plus a new one: a keeps running.
    m.apply(vec![pool(
        &p,
        vec![ta.clone(), target(&srv_b, &p, 200, 200)],
    )])
    .await;
    wait_for(5, "b scraped", || scrapes(&m, &ub) >= 1).await;
    assert!(scrapes(&m, &ua) >= before, "loop of a restarted");
    wait_for(5, "a continues", || scrapes(&m, &ua) >= before + 2).await;
    // Cadence of a around the apply: every gap close to the interval (no extra scrape).
    let times = srv_a.s.hit_times.lock().clone();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap > Duration::from_millis(120) && gap < Duration::from_millis(600),
            "gap {gap:?} in {times:?}"
        );
    }
    // New params: a restarts (counter resets) without writing staleness markers.
    let p2 = params("diff");
    let ta2 = ScrapeTarget {
        params: p2.clone(),
        ..ta.clone()
    };
    m.apply(vec![pool(&p2, vec![ta2])]).await;
    assert!(scrapes(&m, &ua) < 2, "not restarted");
    assert!(status_of(&m, &ub).is_none());
    wait_for(5, "a scraped after restart", || scrapes(&m, &ua) >= 2).await;
    let a = values(&dump(&head), &["\"a\""]);
    assert!(a.iter().all(|v| !is_stale_nan(*v)), "{a:?}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_limit_fails_all_targets() {
    let srv_a = serve(Page::text("a 1\n")).await;
    let srv_b = serve(Page::text("b 1\n")).await;
    let (head, m) = new_manager();
    let p = params("tl");
    let mut pl = pool(
        &p,
        vec![target(&srv_a, &p, 100, 100), target(&srv_b, &p, 100, 100)],
    );
    pl.target_limit = 1;
    pl.dropped = vec![Labels::from_pairs(&[("__address__", "dropped:1")])];
    m.apply(vec![pl.clone()]).await;
    let (ua, ub) = (srv_a.url(), srv_b.url());
    wait_for(5, "scrapes", || {
        scrapes(&m, &ua) >= 1 && scrapes(&m, &ub) >= 1
    })
    .await;
    for u in [&ua, &ub] {
        let st = status_of(&m, u).unwrap();
        assert_eq!(st.health, TargetHealth::Down);
        assert_eq!(
            st.last_error.as_deref(),
            Some("target_limit exceeded (number of targets: 2, limit: 1)")
        );
    }
    assert_eq!(srv_a.hits() + srv_b.hits(), 0);
    assert!(find(&dump(&head), &["\"a\""]).is_empty());
    assert_eq!(m.targets().dropped.len(), 1);
    // Within the limit: scraping resumes.
    pl.targets.truncate(1);
    m.apply(vec![pl]).await;
    wait_for(5, "a up", || {
        status_of(&m, &ua).is_some_and(|s| s.health == TargetHealth::Up)
    })
    .await;
    m.stop().await;
}

/// Records the metadata a scrape hands to its storage.
struct MetadataSink {
    head: Arc<Head>,
    seen: Mutex<Vec<String>>,
}

impl Appendable for MetadataSink {
    fn appender(&self) -> crate::error::Result<Box<dyn strata_tsdb::storage::Appender + '_>> {
        Appendable::appender(&self.head)
    }
    fn record_metadata(&self, family: &str, typ: &str, help: &str, unit: &str) {
        self.seen
            .lock()
            .push(format!("{family}|{typ}|{help}|{unit}"));
    }
}

#[test]
fn metadata_is_reported_when_new_or_changed() {
    let sink = MetadataSink {
        head: Head::in_memory(HeadOptions::default()),
        seen: Mutex::new(Vec::new()),
    };
    let cfg = loop_cfg(ScrapeParams::default());
    let mut cache = ScrapeCache::new();
    let mut scrape = |body: &str, t: i64| {
        let fetched = Ok((
            body.as_bytes().to_vec(),
            Some("application/openmetrics-text; version=1.0.0".to_string()),
        ));
        let (_, err) = process(&cfg, &mut cache, &sink, &fetched, t, Instant::now());
        assert_eq!(err, None);
        std::mem::take(&mut *sink.seen.lock())
    };
    let page = "# TYPE req counter\n# HELP req Requests served.\nreq_total 1\n\
                # TYPE temp_celsius gauge\n# UNIT temp_celsius celsius\ntemp_celsius 20\n# TYPE odd unknown\nodd 1\n# EOF\n";
    let mut first = scrape(page, 1000);
    first.sort();
    assert_eq!(
        first,
        vec![
            "odd|unknown||",
            "req|counter|Requests served.|",
            "temp_celsius|gauge||celsius"
        ]
    );
    // The same page again: nothing new.
    assert!(scrape(page, 2000).is_empty());
    // A changed HELP is reported again, for that family only.
    let changed = page.replace("Requests served.", "Requests handled.");
    assert_eq!(
        scrape(&changed, 3000),
        vec!["req|counter|Requests handled.|"]
    );
}
