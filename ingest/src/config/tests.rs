use super::*;

/// A configuration exercising the same fields as Prometheus's `conf.good.yml` that Strata
/// reads (written for Strata, not copied).
const FULL: &str = r#"
# my global config
global:
  scrape_interval: 15s
  evaluation_interval: 30s
  body_size_limit: 15MB
  sample_limit: 1500
  target_limit: 30
  label_limit: 30
  label_name_length_limit: 200
  label_value_length_limit: 200
  query_log_file: query.log
  external_labels:
    monitor: codelab
    foo: bar

runtime:
  gogc: 42

rule_files:
  - "first.rules"
  - "my/*.rules"

remote_write:
  - url: http://remote1/push
    name: drop_expensive
    write_relabel_configs:
      - source_labels: [__name__]
        regex: expensive.*
        action: drop
    queue_config:
      capacity: 2500
      max_shards: 200
      retry_on_http_429: true
  - url: http://remote2/push
    protobuf_message: io.prometheus.write.v2.Request
    name: rw_tls
    tls_config:
      cert_file: valid_cert_file
      key_file: valid_key_file
    headers:
      name: value
    sigv4:
      region: us-east-1

remote_read:
  - url: http://remote1/read
    read_recent: true

scrape_configs:
  - job_name: prometheus
    honor_labels: true
    fallback_scrape_protocol: PrometheusText0.0.4
    file_sd_configs:
      - files:
          - foo/*.slow.json
          - foo/*.slow.yml
          - single/file.yml
        refresh_interval: 10m
      - files:
          - bar/*.yaml
    static_configs:
      - targets: ["localhost:9090", "localhost:9191"]
        labels:
          my: label
          your: label
    relabel_configs:
      - source_labels: [job, __meta_dns_name]
        regex: (.*)some-[regex]
        target_label: job
        replacement: foo-${1}
      - source_labels: [abc]
        target_label: cde
      - replacement: static
        target_label: abc
      - regex:
        replacement: static
        target_label: abc
      - source_labels: [foo]
        target_label: abc
        action: keepequal
      - source_labels: [foo]
        target_label: abc
        action: dropequal
    authorization:
      credentials_file: valid_token_file
    tls_config:
      min_version: TLS10

  - job_name: service-x
    basic_auth:
      username: admin_name
      password: "multiline\nmysecret\ntest"
    scrape_interval: 50s
    scrape_timeout: 5s
    scrape_protocols: ["PrometheusText0.0.4"]
    body_size_limit: 10MB
    sample_limit: 1000
    target_limit: 35
    label_limit: 35
    label_name_length_limit: 210
    label_value_length_limit: 210
    metrics_path: /my_path
    scheme: https
    dns_sd_configs:
      - refresh_interval: 15s
        names:
          - first.dns.address.domain.com
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: expensive_metric.*
        action: drop

  - job_name: service-y
    bearer_token: mysecret
    params:
      module: [http_2xx, other]
    honor_timestamps: false
    enable_compression: false
    follow_redirects: false
    enable_http2: false
    kubernetes_sd_configs:
      - role: pod
    relabel_configs:
      - source_labels: [__meta_sd_consul_tags]
        regex: 'label:([^=]+)=([^,]+)'
        separator: ','
        target_label: ${1}
        replacement: ${2}
      - source_labels: [__tmp_hash]
        modulus: 8
        target_label: __tmp_hash
        action: hashmod
      - action: labelmap
        regex: __meta_sd_(.+)
      - action: labeldrop
        regex: d
      - action: labelkeep
        regex: k

  - job_name: service-z
    scrape_interval: 5s
    bearer_token_file: token_file
"#;

#[test]
fn full_example_loads_with_prometheus_semantics() {
    let c = Config::from_yaml(FULL).unwrap();
    let g = &c.global;
    assert_eq!(g.scrape_interval, Duration::from_secs(15));
    assert_eq!(g.scrape_timeout, Duration::from_secs(10));
    assert_eq!(g.evaluation_interval, Duration::from_secs(30));
    assert_eq!(g.body_size_limit, ByteSize(15 << 20));
    assert_eq!(
        g.external_labels.get("monitor").map(String::as_str),
        Some("codelab")
    );
    assert_eq!(c.scrape_configs.len(), 4);

    let p = &c.scrape_configs[0];
    assert_eq!(p.job_name, "prometheus");
    assert!(p.honor_labels);
    assert!(p.honor_timestamps, "honor_timestamps defaults to true");
    assert_eq!(p.scrape_interval, Duration::from_secs(15), "inherited");
    assert_eq!(p.scrape_timeout, Duration::from_secs(10), "inherited");
    assert_eq!(p.metrics_path, "/metrics");
    assert_eq!(p.scheme, "http");
    assert!(p.enable_compression);
    assert_eq!(p.scrape_protocols, ScrapeProtocol::DEFAULT.to_vec());
    assert_eq!(
        p.fallback_scrape_protocol,
        Some(ScrapeProtocol::PrometheusText0_0_4)
    );
    // Limits inherit from global.
    assert_eq!(p.body_size_limit, ByteSize(15 << 20));
    assert_eq!(p.sample_limit, 1500);
    assert_eq!(p.target_limit, 30);
    assert_eq!(p.label_limit, 30);
    assert_eq!(p.label_name_length_limit, 200);
    assert_eq!(p.label_value_length_limit, 200);
    assert_eq!(p.file_sd_configs.len(), 2);
    assert_eq!(
        p.file_sd_configs[0].refresh_interval,
        Duration::from_secs(600)
    );
    assert_eq!(
        p.file_sd_configs[1].refresh_interval,
        Duration::from_secs(300)
    );
    assert_eq!(
        p.static_configs[0].targets,
        vec!["localhost:9090", "localhost:9191"]
    );
    assert_eq!(p.relabel_configs.len(), 6);
    assert_eq!(p.relabel_configs[0].replacement, "foo-${1}");
    assert_eq!(
        p.relabel_configs[4].action,
        crate::relabel::Action::KeepEqual
    );
    let auth = p.http_client.authorization.as_ref().unwrap();
    assert_eq!(auth.auth_type, "Bearer");
    assert_eq!(
        auth.credentials_file,
        Some(PathBuf::from("valid_token_file"))
    );
    assert_eq!(
        p.http_client.tls_config.min_version,
        Some(TlsVersion::TLS10)
    );
    assert!(p.http_client.follow_redirects);
    assert!(p.http_client.enable_http2);

    let x = &c.scrape_configs[1];
    assert_eq!(x.scrape_interval, Duration::from_secs(50));
    assert_eq!(x.scrape_timeout, Duration::from_secs(5));
    assert_eq!(
        x.scrape_protocols,
        vec![ScrapeProtocol::PrometheusText0_0_4]
    );
    assert_eq!(x.body_size_limit, ByteSize(10 << 20));
    assert_eq!(x.sample_limit, 1000);
    assert_eq!(x.metrics_path, "/my_path");
    assert_eq!(x.scheme, "https");
    let ba = x.http_client.basic_auth.as_ref().unwrap();
    assert_eq!(ba.username, "admin_name");
    assert_eq!(ba.password.expose(), "multiline\nmysecret\ntest");
    assert_eq!(x.unsupported_sd_configs, vec!["dns_sd_configs"]);

    let y = &c.scrape_configs[2];
    let auth = y.http_client.authorization.as_ref().unwrap();
    assert_eq!(
        (auth.auth_type.as_str(), auth.credentials.expose()),
        ("Bearer", "mysecret")
    );
    assert_eq!(y.params["module"], vec!["http_2xx", "other"]);
    assert!(!y.honor_timestamps);
    assert!(!y.enable_compression);
    assert!(!y.http_client.follow_redirects);
    assert!(!y.http_client.enable_http2);

    // Only the interval is set and it is below the global timeout: timeout = interval.
    let z = &c.scrape_configs[3];
    assert_eq!(z.scrape_interval, Duration::from_secs(5));
    assert_eq!(z.scrape_timeout, Duration::from_secs(5));
    let auth = z.http_client.authorization.as_ref().unwrap();
    assert_eq!(auth.credentials_file, Some(PathBuf::from("token_file")));

    let rw = &c.remote_write;
    assert_eq!(rw.len(), 2);
    assert_eq!(rw[0].url, "http://remote1/push");
    assert_eq!(rw[0].remote_timeout, Duration::from_secs(30));
    assert_eq!(rw[0].protobuf_message, ProtobufMessage::WriteV1);
    assert_eq!(rw[0].queue_config.capacity, 2500);
    assert_eq!(rw[0].queue_config.max_shards, 200);
    assert_eq!(rw[0].queue_config.min_shards, 1);
    assert_eq!(rw[0].queue_config.max_samples_per_send, 2000);
    assert_eq!(
        rw[0].queue_config.batch_send_deadline,
        Duration::from_secs(5)
    );
    assert_eq!(rw[0].queue_config.min_backoff, Duration::from_millis(30));
    assert_eq!(rw[0].queue_config.max_backoff, Duration::from_secs(5));
    assert!(rw[0].queue_config.retry_on_http_429);
    assert!(
        !rw[0].http_client.enable_http2,
        "remote write defaults HTTP/2 off"
    );
    assert!(rw[0].metadata_config.send);
    assert_eq!(rw[1].protobuf_message, ProtobufMessage::WriteV2);
    assert_eq!(rw[1].headers["name"], "value");
    assert!(!rw[1].queue_config.retry_on_http_429);

    assert_eq!(
        c.unsupported(),
        vec![
            "remote_read",
            "rule_files",
            "runtime",
            "global.query_log_file",
            "scrape_configs[1].dns_sd_configs",
            "scrape_configs[2].kubernetes_sd_configs",
            "remote_write[1].sigv4",
        ]
    );
    assert_eq!(c.source_text(), FULL);

    // The rendered configuration hides secrets and parses back.
    let y = c.to_yaml();
    assert!(!y.contains("mysecret"), "{y}");
    assert!(y.contains("<secret>"));
    assert!(y.contains("scrape_interval: 15s"));
    let again = Config::from_yaml(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
    assert_eq!(again.scrape_configs.len(), 4);
    assert_eq!(
        again.scrape_configs[1].scrape_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(
        again.unsupported().len(),
        c.unsupported().len() - 2,
        "SD configs are not rendered"
    );
}

#[test]
fn empty_and_minimal_configs() {
    for text in ["", "# nothing\n", "global:\n", "scrape_configs:\n"] {
        let c = Config::from_yaml(text).unwrap();
        assert_eq!(c.global.scrape_interval, Duration::from_secs(60));
        assert_eq!(c.global.scrape_timeout, Duration::from_secs(10));
        assert_eq!(c.global.evaluation_interval, Duration::from_secs(60));
        assert!(c.scrape_configs.is_empty());
        assert!(c.unsupported().is_empty());
    }
    // The stock prometheus.yml shape, with a commented-out (null) rule_files list.
    let c = Config::from_yaml(
        "global:\n  scrape_interval: 15s\nrule_files:\n  # - first.yml\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"localhost:9090\"]\n",
    )
    .unwrap();
    assert_eq!(c.scrape_configs[0].scrape_timeout, Duration::from_secs(10));
    // A global interval below the default timeout lowers the timeout.
    let c = Config::from_yaml("global:\n  scrape_interval: 5s\n").unwrap();
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(5));
}

fn err(text: &str) -> String {
    match Config::from_yaml(text) {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn error_messages_name_the_field() {
    let e = err("global:\n  scrape_interval: 15s\n  scrap_timeout: 5s\n");
    assert!(e.contains("unknown field `scrap_timeout`"), "{e}");
    assert!(e.contains("line"), "{e}");

    let e =
        err("scrape_configs:\n  - job_name: a\n    static_configs: []\n    scrape_intervall: 5s\n");
    assert!(e.contains("unknown field `scrape_intervall`"), "{e}");
    assert!(e.contains("scrape_configs[0]"), "{e}");
    assert!(e.contains("line 2"), "{e}");

    let e = err("scrape_configs:\n  - job_name: a\n    scrape_interval: 1x\n");
    assert!(e.contains("scrape_configs[0].scrape_interval"), "{e}");
    assert!(e.contains("unknown unit \"x\""), "{e}");
    assert!(e.contains("line 3 column 22"), "{e}");

    let e = err("scrape_configs:\n  - job_name: a\n    scrape_interval: 15\n");
    assert!(e.contains("not a valid duration string: \"15\""), "{e}");

    let e =
        err("scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n");
    assert!(
        e.contains("scrape_configs[0]: scrape timeout greater than scrape interval for scrape config with job name \"a\""),
        "{e}"
    );

    let e = err("global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n");
    assert!(
        e.contains("global scrape timeout greater than scrape interval"),
        "{e}"
    );

    let e = err("scrape_configs:\n  - job_name: a\n  - job_name: b\n  - job_name: a\n");
    assert!(
        e.contains("scrape_configs[2]: found multiple scrape configs with job name \"a\""),
        "{e}"
    );

    let e = err("scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [x]\n        regex: 'a(b'\n        target_label: y\n");
    assert!(e.contains("scrape_configs[0].relabel_configs[0]"), "{e}");
    assert!(e.contains("invalid regex \"a(b\""), "{e}");

    let e = err("scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: hashmod\n        target_label: y\n");
    assert!(e.contains("requires non-zero modulus"), "{e}");

    let e = err("scrape_configs:\n  - static_configs: []\n");
    assert!(e.contains("job_name is empty"), "{e}");

    let e =
        err("scrape_configs:\n  - job_name: a\n    bearer_token: x\n    bearer_token_file: y\n");
    assert!(
        e.contains("at most one of bearer_token & bearer_token_file"),
        "{e}"
    );
    let e = err(
        "scrape_configs:\n  - job_name: a\n    bearer_token: x\n    basic_auth: {username: u}\n",
    );
    assert!(
        e.contains("at most one of basic_auth, oauth2, bearer_token & bearer_token_file"),
        "{e}"
    );
    let e = err("scrape_configs:\n  - job_name: a\n    authorization: {credentials: x}\n    basic_auth: {username: u}\n");
    assert!(
        e.contains("at most one of basic_auth, oauth2 & authorization"),
        "{e}"
    );
    let e =
        err("scrape_configs:\n  - job_name: a\n    authorization: {type: Basic, credentials: x}\n");
    assert!(e.contains("use \"basic_auth\" instead"), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: p, password_file: f}\n");
    assert!(
        e.contains("at most one of basic_auth password, password_file"),
        "{e}"
    );
    let e = err("scrape_configs:\n  - job_name: a\n    tls_config: {cert_file: c}\n");
    assert!(e.contains("exactly one of key or key_file"), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    tls_config: {min_version: TLS09}\n");
    assert!(
        e.contains("scrape_configs[0].tls_config.min_version"),
        "{e}"
    );

    let e = err("scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['http://x:80/metrics']\n");
    assert!(e.contains("is not a valid hostname"), "{e}");

    let e = err(
        "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [targets.txt]\n",
    );
    assert!(
        e.contains("path name \"targets.txt\" is not valid for file discovery"),
        "{e}"
    );

    let e = err("scrape_configs:\n  - job_name: a\n    scheme: ftp\n");
    assert!(e.contains("scheme \"ftp\""), "{e}");

    let e = err("scrape_configs:\n  - job_name: a\n    scrape_protocols: [Bogus]\n");
    assert!(e.contains("scrape_configs[0].scrape_protocols"), "{e}");

    let e = err("scrape_configs:\n  - job_name: a\n    body_size_limit: 10XB\n");
    assert!(e.contains("scrape_configs[0].body_size_limit"), "{e}");
    assert!(e.contains("unknown unit XB"), "{e}");

    let e = err("remote_write:\n  - name: x\n");
    assert!(e.contains("url for remote_write is empty"), "{e}");
    let e = err("remote_write:\n  - url: http://a/\n    headers: {Content-Type: x}\n");
    assert!(e.contains("Content-Type is a reserved header"), "{e}");
    let e = err(
        "remote_write:\n  - url: http://a/\n    queue_config: {min_shards: 5, max_shards: 2}\n",
    );
    assert!(
        e.contains("min_shards must not be greater than max_shards"),
        "{e}"
    );
    let e = err("remote_write:\n  - url: http://a/\n    queue_config: {capacityy: 5}\n");
    assert!(e.contains("unknown field `capacityy`"), "{e}");
    let e = err("remote_write:\n  - url: http://a/\n    protobuf_message: foo\n");
    assert!(e.contains("remote_write[0].protobuf_message"), "{e}");
    let e =
        err("remote_write:\n  - url: http://a/\n    name: n\n  - url: http://b/\n    name: n\n");
    assert!(e.contains("found multiple remote write configs"), "{e}");
    let e =
        err("remote_write:\n  - url: http://a/\n    basic_auth: {username: u}\n    sigv4: {}\n");
    assert!(
        e.contains("at most one of basic_auth, authorization"),
        "{e}"
    );

    let e = err("alertmanager: {}\n");
    assert!(e.contains("unknown field `alertmanager`"), "{e}");

    let e = err("global:\n  external_labels:\n    '': x\n");
    assert!(e.contains("not a valid label name"), "{e}");
    let e =
        err("global:\n  metric_name_validation_scheme: legacy\n  external_labels:\n    a.b: x\n");
    assert!(e.contains("\"a.b\" is not a valid label name"), "{e}");
}

#[test]
fn legacy_validation_applies_to_relabel_targets() {
    let text = "scrape_configs:\n  - job_name: a\n    metric_name_validation_scheme: legacy\n    relabel_configs:\n      - target_label: a.b\n        replacement: x\n";
    let e = err(text);
    assert!(e.contains("\"a.b\" is invalid 'target_label'"), "{e}");
    // UTF-8 (the default) accepts it.
    Config::from_yaml(&text.replace("    metric_name_validation_scheme: legacy\n", "")).unwrap();
    let c = Config::from_yaml(
        "scrape_configs:\n  - job_name: a\n    metric_name_validation_scheme: legacy\n",
    )
    .unwrap();
    assert_eq!(
        c.scrape_configs[0].metric_name_escaping_scheme,
        "underscores"
    );
}

#[test]
fn external_labels_expand_environment() {
    let env = |k: &str| match k {
        "HOST" => Ok("h1".to_string()),
        _ => Err(std::env::VarError::NotPresent),
    };
    let cases = [
        ("$HOST", "h1"),
        ("${HOST}-x", "h1-x"),
        ("a$$b", "a$b"),
        ("$MISSING", ""),
        ("cost: 5$", "cost: 5$"),
        ("${}x", "x"),
        ("plain", "plain"),
    ];
    for (input, want) in cases {
        assert_eq!(expand_env(input, &env), want, "{input:?}");
    }
}

#[test]
fn load_resolves_paths_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("jobs");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("extra.yml"),
        "scrape_configs:\n  - job_name: extra\n    file_sd_configs:\n      - files: [t/*.json]\n",
    )
    .unwrap();
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg_path,
        "scrape_config_files: [jobs/*.yml]\nscrape_configs:\n  - job_name: a\n    bearer_token_file: secrets/token\n    tls_config: {ca_file: ca.pem, cert_file: /abs/cert.pem, key_file: key.pem}\n    file_sd_configs:\n      - files: [targets/*.json, /abs/t.yml]\nremote_write:\n  - url: http://x/\n    basic_auth: {username: u, password_file: pw}\n",
    )
    .unwrap();
    let c = Config::load(&cfg_path).unwrap();
    let d = dir.path();
    let a = &c.scrape_configs[0];
    let auth = a.http_client.authorization.as_ref().unwrap();
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some(d.join("secrets/token").as_path())
    );
    assert_eq!(
        a.http_client.tls_config.ca_file.as_deref(),
        Some(d.join("ca.pem").as_path())
    );
    assert_eq!(
        a.http_client.tls_config.cert_file.as_deref(),
        Some(Path::new("/abs/cert.pem"))
    );
    assert_eq!(
        a.file_sd_configs[0].files,
        vec![d.join("targets/*.json"), PathBuf::from("/abs/t.yml")]
    );
    let rw = &c.remote_write[0].http_client.basic_auth.as_ref().unwrap();
    assert_eq!(rw.password_file.as_deref(), Some(d.join("pw").as_path()));
    // The job from scrape_config_files, with its paths relative to its own file.
    let extra = c.scrape_config("extra").unwrap();
    assert_eq!(extra.file_sd_configs[0].files, vec![sub.join("t/*.json")]);
    assert_eq!(c.path(), Some(cfg_path.as_path()));

    // Errors name the file.
    std::fs::write(
        &cfg_path,
        "scrape_configs:\n  - job_name: a\n    bogus: 1\n",
    )
    .unwrap();
    let e = Config::load(&cfg_path).unwrap_err().to_string();
    assert!(e.starts_with(&cfg_path.display().to_string()), "{e}");
    assert!(e.contains("unknown field `bogus`"), "{e}");
    let e = Config::load(&d.join("missing.yml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yml"), "{e}");
}

#[test]
fn scrape_native_histograms_switches_protocol_default() {
    let c =
        Config::from_yaml("scrape_configs:\n  - job_name: a\n    scrape_native_histograms: true\n")
            .unwrap();
    assert_eq!(
        c.scrape_configs[0].scrape_protocols,
        ScrapeProtocol::DEFAULT_PROTO_FIRST.to_vec()
    );
    assert_eq!(
        c.unsupported(),
        vec!["scrape_configs[0].scrape_native_histograms"]
    );
    let c = Config::from_yaml(
        "global:\n  scrape_protocols: [PrometheusText1.0.0]\nscrape_configs:\n  - job_name: a\n",
    )
    .unwrap();
    assert_eq!(
        c.scrape_configs[0].scrape_protocols,
        vec![ScrapeProtocol::PrometheusText1_0_0]
    );
}
