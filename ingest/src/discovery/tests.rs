use super::*;
use crate::config::{Config, Duration};
use std::time::Duration as StdDuration;

fn sd(files: Vec<PathBuf>) -> FileSdConfig {
    FileSdConfig {
        files,
        refresh_interval: Duration::from_secs(300),
    }
}

#[test]
fn static_configs_become_numbered_groups() {
    let c = Config::from_yaml(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: [h1:1, h2:2]\n        labels: {env: prod}\n      - targets: [h3:3]\n",
    )
    .unwrap();
    let g = static_groups(&c.scrape_configs[0]);
    assert_eq!(
        g,
        vec![
            TargetGroup {
                source: "0".into(),
                targets: vec!["h1:1".into(), "h2:2".into()],
                labels: vec![("env".into(), "prod".into())],
            },
            TargetGroup {
                source: "1".into(),
                targets: vec!["h3:3".into()],
                labels: vec![],
            },
        ]
    );
}

#[test]
fn reads_json_and_yaml_with_globs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("a.json"),
        r#"[{"targets": ["h1:1", "h2:2"], "labels": {"env": "prod"}}, {"targets": ["h3:3"]}]"#,
    )
    .unwrap();
    std::fs::write(
        d.join("b.yml"),
        "- targets: [h4:4]\n  labels:\n    team: x\n",
    )
    .unwrap();
    std::fs::write(d.join("ignored.txt"), "nope").unwrap();
    std::fs::write(d.join("empty.yaml"), "").unwrap();

    let (groups, errors) = read_file_sd(&sd(vec![
        d.join("*.json"),
        d.join("*.yml"),
        d.join("empty.yaml"),
    ]));
    assert!(errors.is_empty(), "{errors:?}");
    let a = d.join("a.json").display().to_string();
    let b = d.join("b.yml").display().to_string();
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0].source, format!("{a}:0"));
    assert_eq!(groups[0].targets, vec!["h1:1", "h2:2"]);
    assert_eq!(
        groups[0].labels,
        vec![
            ("__meta_filepath".to_string(), a.clone()),
            ("env".to_string(), "prod".to_string())
        ]
    );
    assert_eq!(groups[1].source, format!("{a}:1"));
    assert_eq!(
        groups[1].labels,
        vec![("__meta_filepath".to_string(), a.clone())]
    );
    assert_eq!(groups[2].source, format!("{b}:0"));
    assert_eq!(groups[2].targets, vec!["h4:4"]);
}

#[test]
fn bad_files_are_reported_and_others_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("good.json"), r#"[{"targets": ["h:1"]}]"#).unwrap();
    std::fs::write(
        d.join("bad.json"),
        r#"[{"targets": ["h:1"], "lables": {}}]"#,
    )
    .unwrap();
    std::fs::write(d.join("null.json"), r#"[null]"#).unwrap();
    std::fs::write(d.join("bad.yml"), "- targets: [a]\n  extra: 1\n").unwrap();
    let (groups, errors) = read_file_sd(&sd(vec![d.join("*.json"), d.join("*.yml")]));
    assert_eq!(groups.len(), 1);
    assert_eq!(errors.len(), 3, "{errors:?}");
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        all.iter()
            .any(|e| e.contains("bad.json") && e.contains("lables")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e.contains("null.json") && e.contains("nil target group")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|e| e.contains("bad.yml") && e.contains("extra")),
        "{all:?}"
    );
}

#[test]
fn wildcards() {
    assert!(wildcard_match("*.json", "a.json"));
    assert!(wildcard_match("*.json", ".json"));
    assert!(!wildcard_match("*.json", "a.yml"));
    assert!(wildcard_match("a*b*c", "aXXbYYc"));
    assert!(!wildcard_match("a*b*c", "aXXbYY"));
    assert!(wildcard_match("t?.yml", "t1.yml"));
    assert!(!wildcard_match("t?.yml", "t12.yml"));
    assert!(glob(Path::new("/definitely/not/here/*.json")).is_empty());
}

async fn next(rx: &mut tokio::sync::watch::Receiver<Vec<TargetGroup>>) -> Vec<TargetGroup> {
    tokio::time::timeout(StdDuration::from_secs(5), rx.changed())
        .await
        .expect("watcher update within 5s")
        .expect("watcher alive");
    rx.borrow_and_update().clone()
}

#[tokio::test]
async fn watcher_follows_changes_and_keeps_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let f = d.join("t.json");
    std::fs::write(&f, r#"[{"targets": ["h:1"]}]"#).unwrap();
    let (tx, mut rx) = tokio::sync::watch::channel(Vec::new());
    let handle =
        spawn_file_sd_watcher_every(sd(vec![d.join("*.json")]), tx, StdDuration::from_millis(20));

    let g = next(&mut rx).await;
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].targets, vec!["h:1"]);

    // A change (different length, so the stamp changes even on coarse clocks).
    std::fs::write(&f, r#"[{"targets": ["h:1", "h:2"]}]"#).unwrap();
    let g = next(&mut rx).await;
    assert_eq!(g[0].targets, vec!["h:1", "h:2"]);

    // A broken version keeps the previous groups; a new file is picked up meanwhile.
    std::fs::write(&f, r#"[{"targets": "#).unwrap();
    std::fs::write(d.join("u.json"), r#"[{"targets": ["u:1"]}]"#).unwrap();
    let g = next(&mut rx).await;
    let all: Vec<&str> = g
        .iter()
        .flat_map(|g| g.targets.iter().map(String::as_str))
        .collect();
    assert_eq!(all, vec!["h:1", "h:2", "u:1"]);

    // A deleted file's groups disappear.
    std::fs::remove_file(&f).unwrap();
    let g = next(&mut rx).await;
    let all: Vec<&str> = g
        .iter()
        .flat_map(|g| g.targets.iter().map(String::as_str))
        .collect();
    assert_eq!(all, vec!["u:1"]);

    // Dropping the receiver stops the task.
    drop(rx);
    tokio::time::timeout(StdDuration::from_secs(5), handle)
        .await
        .expect("watcher stops once receivers are gone")
        .unwrap();
}
