use super::*;
use crate::config::Config;

fn job(yaml_job: &str) -> ScrapeConfig {
    let text = format!("global:\n  scrape_interval: 30s\nscrape_configs:\n{yaml_job}");
    let c = Config::from_yaml(&text).unwrap_or_else(|e| panic!("{text}\n{e}"));
    c.scrape_configs[0].clone()
}

fn group(targets: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
    TargetGroup {
        source: "0".into(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

fn active(o: TargetOutcome) -> Target {
    match o {
        TargetOutcome::Active(t) => t,
        other => panic!("expected an active target, got {other:?}"),
    }
}

#[test]
fn defaults_without_relabeling() {
    let cfg = job("  - job_name: node\n");
    let t =
        active(populate_target(&cfg, &group(&["h1:9100"], &[("env", "prod")]), "h1:9100").unwrap());
    assert_eq!(
        t.labels,
        ls(&[("env", "prod"), ("instance", "h1:9100"), ("job", "node")])
    );
    assert_eq!(
        t.discovered_labels,
        ls(&[
            ("__address__", "h1:9100"),
            ("__always_scrape_classic_histograms__", "false"),
            ("__convert_classic_histograms_to_nhcb__", "false"),
            ("__metrics_path__", "/metrics"),
            ("__scheme__", "http"),
            ("__scrape_interval__", "30s"),
            ("__scrape_native_histograms__", "false"),
            ("__scrape_timeout__", "10s"),
            ("env", "prod"),
            ("job", "node"),
        ])
    );
    assert_eq!(t.url, "http://h1:9100/metrics");
    assert_eq!(t.interval, Duration::from_secs(30));
    assert_eq!(t.timeout, Duration::from_secs(10));
    assert_eq!(t.scrape_pool, "node");
    assert_eq!(t.internal_labels.get("__address__"), Some("h1:9100"));
    // No default port is added (Prometheus 3).
    let t = active(populate_target(&cfg, &group(&["h1"], &[]), "h1").unwrap());
    assert_eq!(t.url, "http://h1/metrics");
    assert_eq!(t.labels.get("instance"), Some("h1"));
}

#[test]
fn group_labels_can_override_job_and_scheme() {
    let cfg = job("  - job_name: node\n");
    let g = group(
        &["h:1"],
        &[
            ("job", "custom"),
            ("__scheme__", "https"),
            ("__metrics_path__", "/m"),
        ],
    );
    let t = active(populate_target(&cfg, &g, "h:1").unwrap());
    assert_eq!(t.labels.get("job"), Some("custom"));
    assert_eq!(t.url, "https://h:1/m");
}

#[test]
fn params_become_labels_and_query() {
    let cfg = job(
        "  - job_name: blackbox\n    metrics_path: /probe\n    params:\n      module: [http_2xx, second]\n      other: ['a b']\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      - source_labels: [__param_target]\n        target_label: instance\n      - target_label: __address__\n        replacement: 127.0.0.1:9115\n",
    );
    let t = active(
        populate_target(
            &cfg,
            &group(&["https://example.com/x"], &[]),
            "https://example.com/x",
        )
        .unwrap(),
    );
    assert_eq!(
        t.url,
        "http://127.0.0.1:9115/probe?module=http_2xx&module=second&other=a+b&target=https%3A%2F%2Fexample.com%2Fx"
    );
    assert_eq!(
        t.labels,
        ls(&[("instance", "https://example.com/x"), ("job", "blackbox")])
    );
    assert_eq!(t.discovered_labels.get("__param_module"), Some("http_2xx"));
    // A __param_ label overrides the first configured value.
    let cfg = job(
        "  - job_name: b\n    params:\n      module: [a, b]\n    relabel_configs:\n      - target_label: __param_module\n        replacement: z\n",
    );
    let t = active(populate_target(&cfg, &group(&["h:1"], &[]), "h:1").unwrap());
    assert_eq!(t.url, "http://h:1/metrics?module=z&module=b");
}

#[test]
fn relabeling_drops_and_meta_labels_are_removed() {
    let cfg = job(
        "  - job_name: j\n    relabel_configs:\n      - source_labels: [__meta_keep]\n        regex: 'yes'\n        action: keep\n      - action: labelmap\n        regex: __meta_(.+)\n",
    );
    let g = group(
        &["a:1", "b:2"],
        &[("__meta_keep", "yes"), ("__meta_zone", "z1")],
    );
    let (outs, errs) = targets_from_group(&cfg, &g);
    assert!(errs.is_empty());
    assert_eq!(outs.len(), 2);
    let t = active(outs[0].clone());
    assert_eq!(
        t.labels,
        ls(&[
            ("instance", "a:1"),
            ("job", "j"),
            ("keep", "yes"),
            ("zone", "z1")
        ])
    );
    assert!(t
        .internal_labels
        .iter()
        .all(|l| !l.name.starts_with("__meta_")));

    let g = group(&["c:3"], &[("__meta_keep", "no")]);
    let (outs, _) = targets_from_group(&cfg, &g);
    match &outs[0] {
        TargetOutcome::Dropped { discovered } => {
            assert_eq!(discovered.get("__meta_keep"), Some("no"));
            assert_eq!(discovered.get("__address__"), Some("c:3"));
        }
        other => panic!("expected dropped, got {other:?}"),
    }
}

#[test]
fn interval_and_timeout_overrides() {
    let cfg = job(
        "  - job_name: j\n    relabel_configs:\n      - source_labels: [__meta_interval]\n        target_label: __scrape_interval__\n      - source_labels: [__meta_timeout]\n        target_label: __scrape_timeout__\n",
    );
    let t = active(
        populate_target(
            &cfg,
            &group(
                &["h:1"],
                &[("__meta_interval", "1m"), ("__meta_timeout", "20s")],
            ),
            "h:1",
        )
        .unwrap(),
    );
    assert_eq!(t.interval, Duration::from_secs(60));
    assert_eq!(t.timeout, Duration::from_secs(20));

    let bad = [
        (("bogus", "5s"), "error parsing scrape interval"),
        (("0", "5s"), "scrape interval cannot be 0"),
        (("1m", "0s"), "scrape timeout cannot be 0"),
        (
            ("10s", "20s"),
            "scrape timeout cannot be greater than scrape interval (\"20s\" > \"10s\")",
        ),
    ];
    for ((i, to), want) in bad {
        let g = group(&["h:1"], &[("__meta_interval", i), ("__meta_timeout", to)]);
        let (outs, errs) = targets_from_group(&cfg, &g);
        assert!(outs.is_empty());
        let e = errs[0].to_string();
        assert!(e.contains(want), "{e}");
        assert!(e.contains("instance 0 in group 0"), "{e}");
    }
}

#[test]
fn address_errors() {
    let cfg = job("  - job_name: j\n    relabel_configs:\n      - source_labels: [__meta_addr]\n        target_label: __address__\n");
    let e =
        populate_target(&cfg, &group(&["h:1"], &[("__meta_addr", "h:1/x")]), "h:1").unwrap_err();
    assert!(
        e.to_string().contains("\"h:1/x\" is not a valid hostname"),
        "{e}"
    );
    let cfg = job("  - job_name: j\n    relabel_configs:\n      - target_label: __address__\n        replacement: ''\n");
    let e = populate_target(&cfg, &group(&["h:1"], &[]), "h:1").unwrap_err();
    assert!(e.to_string().contains("no address"), "{e}");
}

#[test]
fn instance_label_is_kept_when_set() {
    let cfg = job("  - job_name: j\n");
    let t =
        active(populate_target(&cfg, &group(&["h:1"], &[("instance", "mine")]), "h:1").unwrap());
    assert_eq!(t.labels.get("instance"), Some("mine"));
}

#[test]
fn path_is_escaped_like_go() {
    let cfg = job("  - job_name: j\n    metrics_path: '/a b/c?d'\n");
    let t = active(populate_target(&cfg, &group(&["h:1"], &[]), "h:1").unwrap());
    assert_eq!(t.url, "http://h:1/a%20b/c%3Fd");
}
