//! Engine tests: a range query must give, at every step, exactly what an instant query at that
//! step gives. Range queries take the series-at-a-time and per-series-cache paths; instant
//! queries (a single step) take the plain per-step path, so this pins the fast paths to it.

use std::sync::Arc;

use strata_tsdb::head::{Head, HeadOptions};
use strata_tsdb::storage::Appender;
use strata_tsdb::Labels;

use super::{Engine, QueryResult, Value};

const START: i64 = 1_000_000;

fn head() -> Arc<Head> {
    let head = Head::in_memory(HeadOptions::default());
    let mut app = head.appender();
    // 15s scrapes over 40 minutes; some series start late, end early, reset or go stale.
    for k in 0..160i64 {
        let t = START + k * 15_000 + (k % 3);
        for i in 0..6 {
            let inst = format!("i{i}");
            let job = if i % 2 == 0 { "a" } else { "b" };
            if i == 5 && k < 60 || i == 4 && k > 100 {
                continue;
            }
            let mut v = (k * (i + 1)) as f64;
            if i == 3 && k > 80 {
                v -= 500.0; // counter reset
            }
            let l = Labels::from_pairs(&[("__name__", "req_total"), ("job", job), ("i", &inst)]);
            app.append(&l, t, v).unwrap();
            let g = Labels::from_pairs(&[("__name__", "temp"), ("job", job), ("i", &inst)]);
            let gv = if i == 2 && (70..75).contains(&k) {
                f64::from_bits(0x7ff0_0000_0000_0002) // stale marker
            } else {
                ((k * 7 + i * 13) % 23) as f64 - 4.5
            };
            app.append(&g, t, gv).unwrap();
            if k == 0 {
                let info = Labels::from_pairs(&[
                    ("__name__", "inst_info"),
                    ("i", &inst),
                    ("region", if i < 3 { "eu" } else { "us" }),
                ]);
                app.append(&info, t, 1.0).unwrap();
            }
        }
    }
    app.commit().unwrap();
    // Info series get their later samples in time order.
    for k in 1..160i64 {
        let mut app = head.appender();
        for i in 0..6 {
            let info = Labels::from_pairs(&[
                ("__name__", "inst_info"),
                ("i", &format!("i{i}")),
                ("region", if i < 3 { "eu" } else { "us" }),
            ]);
            app.append(&info, START + k * 15_000 + 7, 1.0).unwrap();
        }
        app.commit().unwrap();
    }
    head
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Compares a range query with instant queries at each of its steps.
fn check(head: &Arc<Head>, q: &str) {
    let e = Engine::default();
    let (start, end, step) = (START + 120_000, START + 2_400_000, 30_000);
    let range: Result<QueryResult, _> = e.query_range(head, q, start, end, step);
    let mut t = start;
    let mut any = 0;
    while t <= end {
        let inst = e.query_instant(head, q, t);
        match (&range, inst) {
            (Ok(r), Ok(i)) => {
                let (Value::Matrix(m), Value::Vector(v)) = (&r.value, &i.value) else {
                    panic!("{q}: unexpected result types");
                };
                let at: Vec<_> = m
                    .iter()
                    .filter_map(|s| {
                        s.floats
                            .iter()
                            .find(|p| p.0 == t)
                            .map(|p| (s.metric.clone(), p.1))
                    })
                    .collect();
                let mut v: Vec<_> = v.iter().map(|s| (s.metric.clone(), s.f)).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(at.len(), v.len(), "{q} at {t}: {at:?} vs {v:?}");
                for (x, y) in at.iter().zip(&v) {
                    assert!(x.0 == y.0 && same(x.1, y.1), "{q} at {t}: {x:?} vs {y:?}");
                }
                any += v.len();
            }
            (Err(_), Err(_)) => return,
            // A range query fails if any of its steps does; look for that step.
            (Err(_), Ok(_)) => {}
            (Ok(_), Err(e)) => panic!("{q} at {t}: instant failed ({e}) but range did not"),
        }
        t += step;
    }
    if let Err(e) = &range {
        panic!("{q}: range failed ({e}) but no instant query did");
    }
    assert!(any > 0, "{q}: empty");
}

#[test]
fn range_queries_match_instant_queries_step_by_step() {
    let h = head();
    for q in [
        "req_total",
        "rate(req_total[5m])",
        "increase(req_total[2m])",
        "delta(temp[5m])",
        "max_over_time(temp[3m])",
        "last_over_time(temp[1m])",
        "predict_linear(temp[10m], 600)",
        "quantile_over_time(0.3, temp[5m])",
        "sum by (job) (rate(req_total[5m]))",
        "avg without (i) (temp)",
        "count(temp > 3)",
        "topk(2, rate(req_total[5m]))",
        "bottomk by (job) (1, temp)",
        "sum by (job) (temp) / on(job) group_left count by (job) (temp)",
        "rate(req_total[5m]) * on(i) group_left(region) inst_info",
        "inst_info * on(i) group_right(region) rate(req_total[5m])",
        "temp > on(i, job) rate(req_total[5m])",
        "temp + ignoring(job) temp",
        "rate(req_total[5m]) == bool on(i) temp",
        "max_over_time(rate(req_total[2m])[10m:1m])",
        "rate({__name__=~\"req_total|temp\"}[5m])",
        "-rate(req_total[5m]) and temp > 0",
    ] {
        check(&h, q);
    }
}
