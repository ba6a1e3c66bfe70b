//! Shared workload for the storage benches: label sets shaped like a Kubernetes cluster
//! scraped by Prometheus.
//!
//! Series `i` belongs to target `i / SERIES_PER_TARGET`; every target exposes the same 20
//! metric names × 5 values of `code` (100 series). A target has `instance="host-<t>:9100"`, a
//! `job` out of 10, a `namespace` out of 50 and a unique `pod`, so label values are shared
//! across series the way they are in real clusters (few names and jobs, many instances/pods).

use strata_tsdb::{Label, Labels};

/// Series per scrape target.
pub const SERIES_PER_TARGET: usize = 100;

pub const METRICS: [&str; 20] = [
    "http_requests_total",
    "http_request_duration_seconds_sum",
    "http_request_duration_seconds_count",
    "http_response_size_bytes_sum",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "go_goroutines",
    "go_memstats_alloc_bytes",
    "go_gc_duration_seconds_sum",
    "grpc_server_handled_total",
    "grpc_server_started_total",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "kube_pod_container_status_restarts_total",
    "node_filesystem_avail_bytes",
    "rpc_errors_total",
    "up_probe_success",
];

pub const JOBS: [&str; 10] = [
    "api",
    "frontend",
    "checkout",
    "payments",
    "search",
    "auth",
    "cart",
    "kube-state-metrics",
    "node-exporter",
    "ingress-nginx",
];

pub const CODES: [&str; 5] = ["200", "201", "400", "404", "500"];

/// Label sets for series `0..n`. Strings are built once per distinct value and shared, as a
/// scrape cache would hold them.
pub fn series_labels(n: usize) -> Vec<Labels> {
    let names: Vec<Label> = METRICS.iter().map(|m| Label::new("__name__", *m)).collect();
    let codes: Vec<Label> = CODES.iter().map(|c| Label::new("code", *c)).collect();
    let jobs: Vec<Label> = JOBS.iter().map(|j| Label::new("job", *j)).collect();
    let namespaces: Vec<Label> = (0..50)
        .map(|i| Label::new("namespace", format!("ns-{i}")))
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in 0..n.div_ceil(SERIES_PER_TARGET) {
        let job = JOBS[t % JOBS.len()];
        let h = (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let instance = Label::new("instance", format!("host-{t}:9100"));
        let pod = Label::new("pod", format!("{job}-{:08x}-{:05x}", h >> 32, h & 0xfffff));
        for m in 0..SERIES_PER_TARGET.min(n - t * SERIES_PER_TARGET) {
            out.push(Labels::from_sorted(vec![
                names[m % METRICS.len()].clone(),
                codes[m / METRICS.len()].clone(),
                instance.clone(),
                jobs[t % JOBS.len()].clone(),
                namespaces[t % namespaces.len()].clone(),
                pod.clone(),
            ]));
        }
    }
    out
}

/// Series count from `STRATA_BENCH_SERIES` (for quick trial runs), else `default`.
#[allow(dead_code)] // not every bench takes a size
pub fn series_count(default: usize) -> usize {
    std::env::var("STRATA_BENCH_SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
