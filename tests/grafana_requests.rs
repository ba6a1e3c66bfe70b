//! Grafana's Prometheus data source, replayed: the requests it sends (build info, the `1+1`
//! health check, label names, `__name__` values, series with `match[]` and `limit`, metadata, a
//! `query_range` as a POST form, `query_exemplars`, label values with `match[]`) go to `strata
//! serve` and to the real Prometheus over the same blocks; every answer must have the same
//! status and JSON shape, and — where the answer is data — the same data.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    free_port, http_get, http_post_form, require_tool, run_ok, strata, urlencode,
    write_openmetrics, Proc,
};
use serde_json::Value;

/// The JSON "shape": object keys and value types, recursively (arrays by their first element).
fn shape(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => match a.first() {
            Some(x) => format!("[{}]", shape(x)),
            None => "[]".into(),
        },
        Value::Object(o) => {
            let mut keys: Vec<_> = o.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", shape(&o[k.as_str()])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// (name, method, path, parameters, whether the data must be equal too)
type Request = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, String)>,
    bool,
);

fn query_string(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn grafana_requests_get_prometheus_answers() {
    let prometheus = require_tool("prometheus");
    let promtool = require_tool("promtool");
    let tmp = tempfile::tempdir().expect("tempdir");
    // 100 series over 3h, off block boundaries, in the past.
    let start_ms = 1_699_999_200_000 + 1_234;
    let (input, _) = write_openmetrics(tmp.path(), 100, 3, start_ms, 11);
    let pdir = tmp.path().join("prom");
    run_ok(
        Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&pdir),
        Duration::from_secs(120),
    );
    let sdir = tmp.path().join("strata");
    copy_dir(&pdir, &sdir);

    let (p_port, s_port) = (free_port(), free_port());
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1m\nscrape_configs: []\n").expect("cfg");
    let mut prom = Proc::spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", pdir.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{p_port}")),
        tmp.path().join("prometheus.log"),
    );
    prom.wait_ready(p_port, "/-/ready", Duration::from_secs(60));
    let mut st = Proc::spawn(
        "strata",
        Command::new(strata())
            .arg("serve")
            .arg("--storage.tsdb.path")
            .arg(&sdir)
            .arg("--storage.tsdb.retention.time")
            .arg("100y")
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{s_port}")),
        tmp.path().join("strata.log"),
    );
    st.wait_ready(s_port, "/-/ready", Duration::from_secs(60));

    let (from, to) = (
        (start_ms / 1000 + 600) as f64,
        (start_ms / 1000 + 9000) as f64,
    );
    let window = vec![("start", format!("{from}")), ("end", format!("{to}"))];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut p = window.clone();
        p.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        p
    };
    // (name, method, path, params, compare data too)
    let requests: Vec<Request> = vec![
        (
            "buildinfo",
            "GET",
            "/api/v1/status/buildinfo",
            vec![],
            false,
        ),
        (
            "health check 1+1",
            "GET",
            "/api/v1/query",
            vec![("query", "1+1".into()), ("time", format!("{to}"))],
            false,
        ),
        ("label names", "GET", "/api/v1/labels", with(&[]), true),
        (
            "__name__ values",
            "GET",
            "/api/v1/label/__name__/values",
            with(&[]),
            true,
        ),
        (
            "series with limit",
            "GET",
            "/api/v1/series",
            with(&[
                ("match[]", "{__name__=\"app_requests_0_total\"}"),
                ("limit", "1000"),
            ]),
            true,
        ),
        (
            "job values for a metric",
            "GET",
            "/api/v1/label/job/values",
            with(&[("match[]", "app_temperature_1")]),
            true,
        ),
        ("metadata", "GET", "/api/v1/metadata", vec![], true),
        (
            "query_range as POST form",
            "POST",
            "/api/v1/query_range",
            with(&[
                ("query", "sum by (job) (rate(app_requests_0_total[5m]))"),
                ("step", "60"),
            ]),
            true,
        ),
        (
            "instant query",
            "POST",
            "/api/v1/query",
            vec![
                ("query", "topk(3, app_temperature_1)".into()),
                ("time", format!("{to}")),
            ],
            true,
        ),
        (
            "query_exemplars",
            "GET",
            "/api/v1/query_exemplars",
            with(&[("query", "app_requests_0_total")]),
            true,
        ),
        (
            "bad query",
            "GET",
            "/api/v1/query",
            vec![("query", "sum(".into())],
            false,
        ),
    ];
    let mut diffs = Vec::new();
    let mut nonempty = 0;
    for (name, method, path, params, data) in requests {
        let qs = query_string(&params);
        let ask = |port: u16| -> (u16, Value) {
            let (code, body) = if method == "GET" {
                http_get(port, &format!("{path}?{qs}"))
            } else {
                http_post_form(port, path, &qs)
            }
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!("{name}: bad JSON ({e}): {}", String::from_utf8_lossy(&body))
            });
            (code, v)
        };
        let (pc, pv) = ask(p_port);
        let (sc, sv) = ask(s_port);
        if pc != sc {
            diffs.push(format!("{name}: status {pc} (Prometheus) vs {sc} (Strata)"));
        }
        let (mut ps, mut ss) = (pv.clone(), sv.clone());
        for v in [&mut ps, &mut ss] {
            // Prometheus 2.42 does not send `infos` (a 3.x addition).
            if let Some(o) = v.as_object_mut() {
                o.remove("infos");
            }
        }
        if shape(&ps) != shape(&ss) {
            diffs.push(format!(
                "{name}: JSON shape differs\n  prometheus {}\n  strata     {}",
                shape(&ps),
                shape(&ss)
            ));
        }
        let d = &ps["data"];
        if d.as_array().is_some_and(|a| !a.is_empty())
            || d["result"].as_array().is_some_and(|a| !a.is_empty())
        {
            nonempty += 1;
        }
        if data && ps["data"] != ss["data"] {
            diffs.push(format!(
                "{name}: data differs\n  prometheus {}\n  strata     {}",
                ps["data"], ss["data"]
            ));
        }
        if pv["status"] == "error" && pv["errorType"] != sv["errorType"] {
            diffs.push(format!(
                "{name}: errorType {} vs {}",
                pv["errorType"], sv["errorType"]
            ));
        }
    }
    assert!(diffs.is_empty(), "{}\n{}", diffs.join("\n"), st.log_text());
    assert!(
        nonempty >= 6,
        "only {nonempty} answers carried data: the comparison is too weak"
    );
    prom.kill();
    st.kill();
}
